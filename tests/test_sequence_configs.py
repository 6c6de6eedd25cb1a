"""The speech and sentence configs: runlocal runs through the loop, the speaker split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnn_jax import data
from cnn_jax.data import resolve_data_dir
from cnn_jax.train import train_and_evaluate
from experiments.configs import spectrogram_cnn_fsdd, tdnn_fsdd

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
