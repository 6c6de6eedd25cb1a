"""The speech and sentence configs: runlocal runs through the loop, the speaker split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnn_jax import data
from cnn_jax.data import resolve_data_dir
from cnn_jax.train import train_and_evaluate
from experiments import cross_validate
from experiments.configs import dilated_textcnn_mr, spectrogram_cnn_fsdd, tdnn_fsdd, textcnn_mr

needs_mr = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "rt_polarity" / "rt-polarity.pos").exists(),
    reason="MR not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)
needs_fsdd = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "fsdd" / "fsdd_recordings.tar.gz").exists(),
    reason="FSDD not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


@needs_fsdd
def test_speaker_independent_split(tmp_path):
    train = data.load_dataset("fsdd", "train", cache_dir=tmp_path, test_speakers=("theo",))
    test = data.load_dataset("fsdd", "test", cache_dir=tmp_path, test_speakers=("theo",))
    assert len(train["label"]) == 2500 and len(test["label"]) == 500
    assert set(np.unique(test["speaker"])).isdisjoint(np.unique(train["speaker"]))
    assert np.bincount(test["label"]).tolist() == [50] * 10
    default = data.load_dataset("fsdd", "test", cache_dir=tmp_path)
    assert len(default["label"]) == 300 and len(np.unique(default["speaker"])) == 6
    with pytest.raises(ValueError, match=r"`test_speakers` \(=\('bob',\)\).*unknown: \['bob'\]"):
        data.load_dataset("fsdd", "test", use_cache=False, test_speakers=("bob",))
    with pytest.raises(ValueError, match=r"`test_speakers` \(='theo'\)"):
        data.load_dataset("fsdd", "test", use_cache=False, test_speakers="theo")


def _train_losses(workdir) -> list[float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


@needs_fsdd
@pytest.mark.parametrize("module", [tdnn_fsdd, spectrogram_cnn_fsdd])
def test_speech_runlocal_trains_and_the_loss_falls(module, tmp_path):
    c = module.get_config("runlocal")
    c.num_train_steps = 30
    c.log_every_steps = 1
    c.optim.learning_rate = 1e-2
    summary = train_and_evaluate(c, str(tmp_path / "run"))
    assert summary["steps"] == 30 and summary["test_count"] == 500
    losses = _train_losses(tmp_path / "run")
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.1, losses


def test_config_variants_parse():
    assert tdnn_fsdd.get_config("paper").model_kwargs.hidden == (8,)
    assert tdnn_fsdd.get_config("index").dataset_options.test_speakers is None
    assert spectrogram_cnn_fsdd.get_config().dataset_options.test_speakers == ("theo",)
    with pytest.raises(ValueError, match="unknown config variant"):
        tdnn_fsdd.get_config("nope")


@needs_mr
def test_mr_vocabulary_bound_holds_for_every_fold():
    sizes = [len(data.load_vocabulary("mr", fold=k)) for k in (0, 9)]
    assert max(sizes) < textcnn_mr.MR_VOCAB_SIZE
    train = data.load_dataset("mr", "train", fold=0)
    assert train["tokens"].max() < sizes[0]


@needs_mr
def test_textcnn_runlocal_trains_and_the_loss_falls(tmp_path):
    c = textcnn_mr.get_config("runlocal")
    c.num_train_steps = 30
    c.log_every_steps = 1
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["test_count"] == 1067
    losses = _train_losses(tmp_path)
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.02, losses


@needs_mr
def test_cross_validate_runs_the_loop_per_fold(tmp_path):
    c = dilated_textcnn_mr.get_config("runlocal")
    c.num_train_steps = 4
    rows = cross_validate.cross_validate(c, tmp_path, [7])
    assert [r["fold"] for r in rows] == [7] and rows[0]["steps"] == 4
    assert (tmp_path / "fold_7" / "metrics.jsonl").exists()
    assert "| 7 |" in (tmp_path / "cv_results.md").read_text()
    static = textcnn_mr.get_config("runlocal,static")
    with pytest.raises(ValueError, match=r"`config.model_kwargs.mode` \(='static'\) needs word"):
        cross_validate.cross_validate(static, tmp_path, [0])


def test_cross_validate_table_and_interruption(tmp_path):
    c = textcnn_mr.get_config("runlocal")
    accuracy = {2: 0.75, 5: 0.8, 7: 0.7}
    seen = []

    def fake_train(config, workdir):
        fold = config.dataset_options.fold
        seen.append((fold, workdir))
        return {"test_accuracy": accuracy[fold], "test_loss": 0.5, "steps": 3,
                "train_seconds": 1.0, "preempted": fold == 7}  # fmt: skip

    rows = cross_validate.cross_validate(c, tmp_path, [2, 5, 7, 9], train=fake_train)
    assert [f for f, _ in seen] == [2, 5, 7] and seen[0][1].endswith("fold_2")
    assert [r["fold"] for r in rows] == [2, 5]  # fold 7 was interrupted: stop there
    blob = json.loads((tmp_path / "cv_results.json").read_text())
    assert blob["mean_test_accuracy"] == pytest.approx(0.775)
    assert blob["std_test_accuracy"] == pytest.approx(np.std([0.75, 0.8], ddof=1))
    assert "| mean of 2 | 77.50% (std 3.54)" in (tmp_path / "cv_results.md").read_text()


def test_parse_folds():
    assert cross_validate.parse_folds(None, 10) == list(range(10))
    assert cross_validate.parse_folds("3,1", 10) == [3, 1]
    for bad in ("10", "1,1", "a"):
        with pytest.raises(ValueError, match=r"`--folds`"):
            cross_validate.parse_folds(bad, 10)


@needs_mr
def test_static_embeddings_from_a_vectors_file_through_cross_validate(tmp_path):
    from cnn_jax.data import embeddings

    vocab = data.load_vocabulary("mr", fold=3)
    words = vocab[2:40]  # a few frequent words get vectors; the rest stay random
    path = tmp_path / "vectors.txt"
    rng = np.random.default_rng(0)
    lines = [f"{w} " + " ".join(f"{v:.4f}" for v in rng.standard_normal(16)) for w in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    vectors = embeddings.load_word_vectors(path)
    c = textcnn_mr.get_config("runlocal,static")
    c.num_train_steps = 3
    rows = cross_validate.cross_validate(c, tmp_path / "cv", [3], vectors=vectors)
    matrix = np.load(tmp_path / "cv" / "fold_3" / "embeddings.npy")
    assert matrix.shape == (textcnn_mr.MR_VOCAB_SIZE, 16)
    np.testing.assert_array_equal(matrix[2:40], vectors[1])
    np.testing.assert_array_equal(matrix[0], 0.0)
    assert rows[0]["steps"] == 3
