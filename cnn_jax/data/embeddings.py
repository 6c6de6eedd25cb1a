r"""Pre-trained word vectors: word2vec binary/text and GloVe files, embedding matrices.

The embedding matrix of a vocabulary is built from them for Kim (2014)'s CNN-static
and CNN-non-static.

Formats (:func:`load_word_vectors`):

* word2vec binary (``GoogleNews-vectors-negative300.bin``): a header line
  ``"<count> <dim>\n"``, then for each word its UTF-8 bytes, a space, and ``dim``
  little-endian float32 values (a newline after them is optional);
* word2vec text: the same header line, then ``"<word> <v1> ... <vdim>"`` lines;
* GloVe text (``glove.6B.300d.txt``): the ``"<word> <v1> ... <vdim>"`` lines without a
  header.

``format='auto'`` picks binary for a ``.bin`` file and otherwise tells the two text
formats apart by the first line (two integers: a word2vec header). Every line must hold
the same number of values (the header's ``dim``, or the first vector's): a line that
does not is a ``ValueError`` naming the file, the line and both counts.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from cnn_jax.data.text import PAD

__all__ = ["FORMATS", "embedding_matrix", "load_word_vectors", "save_embedding_matrix"]

#: Values of ``format``.
FORMATS = ("auto", "word2vec_binary", "word2vec_text", "glove")


def _is_header(line: str) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _read_text(
    path: Path, has_header: bool, keep: Collection[str] | None
) -> tuple[list[str], np.ndarray]:
    where = os.fspath(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    count = None
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, start=1):
            if lineno == 1 and has_header:
                header = _is_header(line)
                if header is None:
                    raise ValueError(f"{where!r}: line 1 {line.strip()!r} is not '<count> <dim>'")
                count, dim = header
                continue
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) == 1 and not parts[0].strip():
                continue  # an empty line
            word, values = parts[0], parts[1:]
            if dim is None:
                dim = len(values)
                if dim == 0:
                    raise ValueError(f"{where!r}: line {lineno} has a word and no values")
            if len(values) != dim:
                raise ValueError(
                    f"{where!r}: inconsistent dimensions: line {lineno} (word {word!r}) has "
                    f"{len(values)} values, expected {dim}"
                )
            if keep is not None and word not in keep:
                continue
            try:
                rows.append(np.asarray(values, np.float32))
            except ValueError as e:
                raise ValueError(f"{where!r}: line {lineno} (word {word!r}): {e}") from e
            words.append(word)
    if dim is None:
        raise ValueError(f"{where!r} holds no word vectors")
    if count is not None and keep is None and len(words) != count:
        raise ValueError(f"{where!r}: the header says {count} words but {len(words)} follow")
    matrix = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return words, matrix


def _read_binary(path: Path, keep: Collection[str] | None) -> tuple[list[str], np.ndarray]:
    where = os.fspath(path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    with open(path, "rb") as f:
        header = _is_header(f.readline().decode("ascii", errors="replace"))
        if header is None:
            raise ValueError(f"{where!r}: the first line is not a word2vec '<count> <dim>' header")
        count, dim = header
        if dim == 0:
            raise ValueError(f"{where!r}: the header says vectors of dimension 0")
        for i in range(count):
            word = bytearray()
            while True:
                ch = f.read(1)
                if not ch:
                    raise ValueError(
                        f"{where!r}: truncated: the header says {count} words of {dim} "
                        f"values, the file ends in word {i}"
                    )
                if ch == b" ":
                    break
                if ch != b"\n" or word:
                    word += ch
            data = f.read(4 * dim)
            if len(data) != 4 * dim:
                raise ValueError(
                    f"{where!r}: truncated or inconsistent dimensions: word {i} "
                    f"({word.decode('utf-8', 'replace')!r}) has {len(data) // 4} values, "
                    f"expected {dim}"
                )
            text = word.decode("utf-8", errors="replace")
            if keep is None or text in keep:
                words.append(text)
                rows.append(np.frombuffer(data, "<f4").astype(np.float32))
        rest = f.read().strip(b"\n")
        if rest:
            raise ValueError(
                f"{where!r}: inconsistent dimensions or count: {len(rest)} bytes follow the "
                f"{count} words of {dim} values the header announces"
            )
    matrix = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    return words, matrix


def load_word_vectors(
    path: str | os.PathLike,
    format: str = "auto",
    vocabulary: Collection[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """Reads a file of word vectors.

    Args:
      path: the file.
      format: one of :data:`FORMATS` (see the module docstring).
      vocabulary: keep only these words (every word if None); the whole file is still
        checked.

    Returns:
      ``(words, vectors)``: the words in file order and a float32 ``(len(words), dim)``
      matrix.

    Raises:
      ValueError: for an unknown ``format``, a missing header, inconsistent dimensions,
        a word count that disagrees with the header, or a value that is not a number;
        each message names the file.
      FileNotFoundError: if the file does not exist.
    """
    if format not in FORMATS:
        raise ValueError(f"`format` (={format!r}) must be one of {FORMATS}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word-vector file `path` (={os.fspath(path)!r}) does not exist")
    keep = None if vocabulary is None else set(vocabulary)
    if format == "auto":
        if path.suffix == ".bin":
            format = "word2vec_binary"
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline()
            format = "word2vec_text" if _is_header(first) else "glove"
    if format == "word2vec_binary":
        return _read_binary(path, keep)
    return _read_text(path, format == "word2vec_text", keep)


def embedding_matrix(
    vocabulary: Sequence[str],
    words: Sequence[str],
    vectors: np.ndarray,
    *,
    num_rows: int | None = None,
    seed: int = 0,
    scale: float = 0.25,
) -> tuple[np.ndarray, int]:
    """The embedding matrix of a vocabulary from pre-trained vectors (Kim 2014).

    Row ``i`` is the vector of ``vocabulary[i]`` if ``words`` has it; the padding token's
    row is zero; every other row (and rows beyond the vocabulary, up to ``num_rows``) is
    drawn from ``U[-scale, scale]`` (Kim: 0.25, close to the variance of word2vec's
    vectors).

    Args:
      vocabulary: the tokens by id (``cnn_jax.data.load_vocabulary``).
      words: the pre-trained words.
      vectors: their ``(len(words), dim)`` vectors.
      num_rows: the matrix's rows (the model's ``vocab_size``); default
        ``len(vocabulary)``.
      seed: the seed of the random rows.
      scale: the random rows' range.

    Returns:
      ``(matrix, found)``: float32 ``(num_rows, dim)`` and how many vocabulary words had
      a pre-trained vector.

    Raises:
      ValueError: if ``vectors`` is not ``(len(words), dim)`` or ``num_rows`` is smaller
        than the vocabulary.
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(
            f"`vectors` must have shape (len(words), dim) = ({len(words)}, dim), got "
            f"{vectors.shape}"
        )
    rows = len(vocabulary) if num_rows is None else int(num_rows)
    if rows < len(vocabulary):
        raise ValueError(f"`num_rows` (={num_rows}) is below the vocabulary's {len(vocabulary)}")
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(-scale, scale, (rows, vectors.shape[1])).astype(np.float32)
    index = {w: i for i, w in enumerate(words)}
    found = 0
    for i, token in enumerate(vocabulary):
        if token == PAD:
            matrix[i] = 0.0
        elif token in index:
            matrix[i] = vectors[index[token]]
            found += 1
    return matrix, found


def save_embedding_matrix(path: str | os.PathLike, matrix: np.ndarray) -> str:
    """Writes ``matrix`` as ``.npy`` for ``TextCNN(embeddings=path)``; returns the path."""
    matrix = np.asarray(matrix, np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D (vocab_size, dim), got shape {matrix.shape}")
    path = os.fspath(path)
    np.save(path, matrix)
    return path
