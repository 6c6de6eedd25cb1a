"""CapsNet through the training loop (config.loss='capsule_margin') and the registries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnn_jax import data, models
from cnn_jax.data import resolve_data_dir
from cnn_jax.train import train_and_evaluate
from cnn_jax.train.losses import get_loss, loss_names
from experiments.configs import capsnet_mnist, capsnet_multimnist

needs_mnist = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


def test_registries_know_capsules():
    assert models.model_class("capsnet") is models.CapsNet
    assert models.model_class("capsnet_baseline") is models.CapsNetBaseline
    assert {"multimnist", "affnist_like"} <= set(data.dataset_names())
    assert "capsule_margin" in loss_names()
    assert get_loss("cross_entropy") is None
    with pytest.raises(ValueError, match=r"config.loss.*nope"):
        get_loss("nope")


def test_runlocal_trains_and_the_loss_falls(tmp_path):
    c = capsnet_mnist.get_config("runlocal")
    c.num_train_steps = 12
    c.log_every_steps = 1
    c.optim.learning_rate = 3e-3
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 12
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert np.isfinite(summary["test_loss"])


@needs_mnist
def test_multimnist_loader(tmp_path):
    train = data.load_dataset(
        "multimnist", "train", cache_dir=tmp_path, train_size=40, test_size=8, seed=1
    )
    again = data.load_dataset(
        "multimnist", "train", use_cache=False, train_size=40, test_size=8, seed=1
    )
    np.testing.assert_array_equal(train["image"], again["image"])
    mnist = data.load_dataset("mnist", "train", cache_dir=tmp_path)
    np.testing.assert_array_equal(mnist["label"][train["source"]], train["digits"])
    assert np.all(train["label"].sum(-1) == 2)
    with pytest.raises(ValueError, match="train_size"):
        data.load_dataset("multimnist", "train", use_cache=False, train_size=0)
    with pytest.raises(ValueError, match=r"`test_size` \(=10001\) must be at most the 10000"):
        data.load_dataset("affnist_like", "test", use_cache=False, test_size=10001)


@pytest.mark.slow
@needs_mnist
def test_multimnist_runlocal_trains(tmp_path):
    """Multi-hot labels through the loop: about a minute on a loaded 2-core machine."""
    c = capsnet_multimnist.get_config("runlocal")
    c.cache_dir = str(tmp_path)
    summary = train_and_evaluate(c, str(tmp_path / "run"))
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["test_count"] == 16


@pytest.mark.slow
def test_figures_from_a_runlocal_checkpoint(tmp_path):
    from experiments.capsules_figures import write_figures

    c = capsnet_mnist.get_config("runlocal")
    train_and_evaluate(c, str(tmp_path))
    paths = write_figures(c, str(tmp_path), num_images=4, index=1)
    assert [p.rsplit("_", 1)[-1] for p in paths] == [
        "reconstructions.png",
        "perturbations.png",
        "routing.png",
    ]
    for p in paths:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
