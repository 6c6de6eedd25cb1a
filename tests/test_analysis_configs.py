"""The claims' configs and studies: each runlocal variant trains through the loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnn_jax.data import resolve_data_dir
from cnn_jax.study import load_study, run_study, write_report
from cnn_jax.train import train_and_evaluate
from experiments.configs import (
    alexnet_cifar10,
    keras_cifar10_cnn,
    keras_mnist_cnn,
    mlp_mnist,
    zipcode_mnist,
)

needs_mnist = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


def test_keras_cifar10_cnn_runlocal(tmp_path):
    """The slides' Keras CIFAR-10 CNN config trains through the loop (synthetic 32x32)."""
    c = keras_cifar10_cnn.get_config("runlocal")
    assert c.model == "keras_cifar_cnn" and c.optim.name == "rmsprop" and c.normalization is None
    c.dataset = "synthetic"
    c.dataset_options = {"image_size": 32, "train_size": 64, "test_size": 32}
    c.num_train_steps = 4
    c.eval_batch_size = 32
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 4 and summary["parameters"] == 1_250_858
    assert np.isfinite(summary["test_loss"])


@pytest.mark.parametrize(
    "module, model, params",
    [
        (mlp_mnist, "mlp_mnist", 669_706),
        (zipcode_mnist, "zipcode", 9_760),
        pytest.param(
            keras_mnist_cnn, "keras_mnist_cnn", 1_199_882, marks=pytest.mark.slow
        ),  # its 24x24x64 convolutions compile and run slowly on a CPU
    ],
)
def test_mnist_configs_runlocal(tmp_path, module, model, params):
    c = module.get_config("runlocal")
    assert c.model == model and c.dataset == "mnist"
    c.num_train_steps = 6
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 6 and summary["parameters"] == params
    assert np.isfinite(summary["test_loss"])


def test_alexnet_cifar10_variants(tmp_path):
    c = alexnet_cifar10.get_config("tanh,gabor")
    assert c.model_kwargs.activation == "tanh" and c.model_kwargs.first_layer == "gabor"
    assert alexnet_cifar10.get_config().model_kwargs.activation == "relu"
    with pytest.raises(ValueError, match="more than one activation"):
        alexnet_cifar10.get_config("relu,tanh")
    with pytest.raises(ValueError, match="unknown config variant"):
        alexnet_cifar10.get_config("swish_typo")
    c = alexnet_cifar10.get_config("sobel,runlocal")
    c.dataset = "synthetic"
    c.dataset_options = {"image_size": 32, "train_size": 64, "test_size": 32}
    c.num_train_steps = 4
    c.eval_batch_size = 32
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 4 and np.isfinite(summary["test_loss"])


@pytest.mark.parametrize(
    "name",
    [
        "activations",
        pytest.param("bottleneck", marks=pytest.mark.slow),
        pytest.param("init", marks=pytest.mark.slow),
    ],
)  # bottleneck, init: several inception / Plain-20 compiles (minutes on a loaded CPU)
def test_studies_runlocal(tmp_path, name):
    study = load_study(f"experiments/configs/study_{name}.py:runlocal")
    assert run_study(study, str(tmp_path))
    res = write_report(study, str(tmp_path))
    assert json.loads((tmp_path / "results.json").read_text())["cells"]
    assert {c["status"] for c in res["cells"]} <= {"done", "diverged"}
    assert len(res["cells"]) == len(study.axes[0].values)
    assert (tmp_path / "table.md").exists() and (tmp_path / "curves.png").exists()
    full = load_study(f"experiments/configs/study_{name}.py")
    assert len(full.axes[0].values) >= 2  # every activation / scheme / module kind
