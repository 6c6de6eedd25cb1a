"""WaveNet through the training loop (config.loss='wavenet_nll') and the sampling script."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from cnn_jax.data import resolve_data_dir
from cnn_jax.train import train_and_evaluate
from experiments import wavenet_sample
from experiments.configs import wavenet_fsdd

needs_fsdd = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "fsdd" / "fsdd_recordings.tar.gz").exists(),
    reason="FSDD not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


@needs_fsdd
def test_runlocal_loss_falls_and_samples_are_written(tmp_path):
    c = wavenet_fsdd.get_config("runlocal")
    c.num_train_steps = 12
    c.log_every_steps = 1
    c.optim.learning_rate = 3e-3
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 12
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert 0 < summary["test_loss"] < 8.5  # bits per sample; 8 is a uniform guess
    paths = wavenet_sample.write_samples(c, str(tmp_path), seconds=0.05)
    assert len(paths) == 12
    with wave.open(str(tmp_path / "wavenet_digit_7.wav")) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth(), f.getnframes()) == (
            8000, 1, 2, 400,
        )  # fmt: skip
    assert (tmp_path / "wavenet_samples.png").stat().st_size > 1000


def test_write_wav_checks_its_audio(tmp_path):
    with pytest.raises(ValueError, match=r"`audio` must be \(T,\).*\(2, 3\)"):
        wavenet_sample.write_wav(str(tmp_path / "x.wav"), np.zeros((2, 3)))
    wavenet_sample.write_wav(str(tmp_path / "x.wav"), np.array([0.0, 1.0, -1.0, 2.0]))
    with wave.open(str(tmp_path / "x.wav")) as f:
        pcm = np.frombuffer(f.readframes(4), "<i2")
    np.testing.assert_array_equal(pcm, [0, 32767, -32767, 32767])
