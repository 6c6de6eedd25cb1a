"""Word-vector files (word2vec binary/text, GloVe), embedding matrices, the tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_jax import data
from cnn_jax.data import embeddings, text

WORDS = ["the", "movie", "café", "n't"]
RNG = np.random.default_rng(0)
VECS = RNG.standard_normal((4, 5)).astype(np.float32)


def _write_text(path, header: bool, rows=None) -> None:
    rows = rows if rows is not None else [[w, *map(repr, v.tolist())] for w, v in zip(WORDS, VECS)]
    lines = ([f"{len(rows)} {len(rows[0]) - 1}"] if header else []) + [" ".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_binary(path, vecs=VECS, words=WORDS, count=None, dim=None) -> None:
    with open(path, "wb") as f:
        f.write(f"{count or len(words)} {dim or vecs.shape[1]}\n".encode())
        for w, v in zip(words, vecs):
            f.write(w.encode("utf-8") + b" " + np.asarray(v, "<f4").tobytes() + b"\n")


@pytest.mark.parametrize("fmt", ["word2vec_binary", "word2vec_text", "glove"])
def test_every_format_reads_back(tmp_path, fmt):
    path = tmp_path / ("v.bin" if fmt == "word2vec_binary" else "v.txt")
    if fmt == "word2vec_binary":
        _write_binary(path)
    else:
        _write_text(path, header=fmt == "word2vec_text")
    for f in (fmt, "auto"):
        words, vecs = embeddings.load_word_vectors(path, format=f)
        assert words == WORDS
        np.testing.assert_array_equal(vecs, VECS)
    words, vecs = embeddings.load_word_vectors(path, vocabulary={"movie", "absent"})
    assert words == ["movie"]
    np.testing.assert_array_equal(vecs, VECS[1:2])


def test_inconsistent_dimensions_and_bad_files_name_the_problem(tmp_path):
    rows = [[w, *map(repr, v.tolist())] for w, v in zip(WORDS, VECS)]
    rows[2] = rows[2][:-1]  # 'café' has 4 values instead of 5
    bad = tmp_path / "bad.txt"
    _write_text(bad, header=False, rows=rows)
    msg = r"bad.txt.*inconsistent dimensions: line 3 \(word 'café'\) has 4 values, expected 5"
    with pytest.raises(ValueError, match=msg):
        embeddings.load_word_vectors(bad)
    _write_text(bad, header=True, rows=rows)
    with pytest.raises(ValueError, match=r"line 4 \(word 'café'\) has 4 values, expected 5"):
        embeddings.load_word_vectors(bad)
    short = tmp_path / "short.bin"
    _write_binary(short, dim=6)  # the header claims 6 values a word
    with pytest.raises(ValueError, match=r"short.bin.*(inconsistent dimensions|truncated)"):
        embeddings.load_word_vectors(short)
    extra = tmp_path / "extra.bin"
    _write_binary(extra, count=3)  # a fourth word follows the 3 announced
    with pytest.raises(ValueError, match=r"extra.bin.*follow the 3 words of 5 values"):
        embeddings.load_word_vectors(extra)
    nan = tmp_path / "nan.txt"
    nan.write_text("a 1 2\nb x 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2 \(word 'b'\)"):
        embeddings.load_word_vectors(nan)
    with pytest.raises(ValueError, match=r"`format` \(='fasttext'\)"):
        embeddings.load_word_vectors(nan, format="fasttext")
    with pytest.raises(FileNotFoundError, match=r"`path`"):
        embeddings.load_word_vectors(tmp_path / "missing.txt")


def test_embedding_matrix_rows(tmp_path):
    vocab = [text.PAD, text.UNK, "the", "plot", "movie"]
    matrix, found = embeddings.embedding_matrix(vocab, WORDS, VECS, num_rows=7, seed=1)
    assert matrix.shape == (7, 5) and found == 2
    np.testing.assert_array_equal(matrix[0], 0.0)
    np.testing.assert_array_equal(matrix[2], VECS[0])
    np.testing.assert_array_equal(matrix[4], VECS[1])
    assert np.all(np.abs(matrix[[1, 3, 5, 6]]) <= 0.25) and np.all(matrix[3] != 0)
    path = embeddings.save_embedding_matrix(tmp_path / "m.npy", matrix)
    np.testing.assert_array_equal(np.load(path), matrix)
    with pytest.raises(ValueError, match=r"`num_rows` \(=3\)"):
        embeddings.embedding_matrix(vocab, WORDS, VECS, num_rows=3)
    with pytest.raises(ValueError, match=r"`vectors` must have shape"):
        embeddings.embedding_matrix(vocab, WORDS, VECS[:2])


def test_tokenizer_edge_cases(tmp_path):
    assert text.tokenize("") == [] and text.tokenize("   \t") == []
    assert text.tokenize("It's a café -- isn't it?") == [
        "it",
        "'s",
        "a",
        "caf",
        "is",
        "n't",
        "it",
        "?",
    ]
    vocab = text.build_vocabulary([["good", "film"], ["good"]])
    assert vocab == [text.PAD, text.UNK, "good", "film"]
    ids, lengths = text.encode([["good", "unseen", "film"]], vocab, 4)
    assert ids.tolist() == [[2, 1, 3, 0]] and lengths.tolist() == [3]  # unknown -> UNK = 1
    with pytest.raises(ValueError, match=r"`sentences\[1\]` is empty"):
        text.encode([["good"], text.tokenize("-- ...")], vocab, 4)
    with pytest.raises(TypeError, match=r"`sentences\[0\]` must be a list of tokens"):
        text.encode(["good film"], vocab, 4)
    # A latin-1 MR copy with empty lines: decoded as latin-1, empty lines dropped.
    root = tmp_path / "data"
    (root / "rt_polarity").mkdir(parents=True)
    neg = "a dull , lifeless film .\n\n  \nno caf\xe9 could save it\n"
    pos = ["a joy \xe0 watch .\n"] + [f"good film number {i}\n" for i in range(20)]
    (root / "rt_polarity" / "rt-polarity.neg").write_bytes(neg.encode("latin-1"))
    (root / "rt_polarity" / "rt-polarity.pos").write_bytes("".join(pos).encode("latin-1"))
    train = data.load_dataset("mr", "train", root, use_cache=False)
    test = data.load_dataset("mr", "test", root, use_cache=False)
    assert len(train["label"]) + len(test["label"]) == 2 + 21
    vocab = data.load_vocabulary("mr", root, use_cache=False)
    assert "\xe0" not in "".join(vocab) and all(t == t.lower() for t in vocab)
