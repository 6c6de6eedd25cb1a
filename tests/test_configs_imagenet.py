"""The ImageNet configs and the fine-tuning study: they build, validate and run."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.train import Checkpointer, train_and_evaluate, validate_config
from tests import torch_oracle

#: config file -> the variants to check (each alone and with runlocal).
CONFIGS = {
    "alexnet_imagenet": ("", "paper", "paper,two_tower"),
    "zfnet_imagenet": ("",),
    "vgg_imagenet": ("", "11", "13,bn", "19"),
    "googlenet_imagenet": ("",),
    "inception_v3_imagenet": ("",),
    "xception_imagenet": ("",),
    "resnet_imagenet": ("", "18", "34", "101,zero_init", "152", "50,v2", "101,v2"),
    "densenet_imagenet": ("", "169", "201", "161"),
}


def _get(name, arg):
    return importlib.import_module(f"experiments.configs.{name}").get_config(arg or None)


@pytest.mark.parametrize(
    "name,arg", [(n, a) for n, args in CONFIGS.items() for a in args], ids=lambda v: v or "-"
)
def test_imagenet_configs_build_and_validate(name, arg):
    c = _get(name, arg)
    validate_config(c)
    assert c.dataset == "imagenet2012" and c.model in models.MODELS
    models.get_model(c.model, num_classes=1000, **c.model_kwargs)
    local = _get(name, ",".join(filter(None, [arg, "runlocal"])))
    validate_config(local)
    assert local.dataset == "synthetic" and local.model == c.model
    assert local.num_train_steps and local.num_train_steps <= 10


def test_config_variant_errors():
    with pytest.raises(ValueError, match="choose one depth"):
        _get("resnet_imagenet", "18,50")
    with pytest.raises(ValueError, match="v2 comes in depths 50, 101 and 152, not 18"):
        _get("resnet_imagenet", "18,v2")
    with pytest.raises(ValueError, match="'two_tower' needs 'paper'"):
        _get("alexnet_imagenet", "two_tower")
    with pytest.raises(ValueError, match="unknown config variant"):
        _get("vgg_imagenet", "17")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,arg",
    [
        ("resnet_imagenet", "18"),
        ("alexnet_imagenet", "paper,two_tower"),
        ("zfnet_imagenet", ""),
        ("vgg_imagenet", "11,bn"),
        ("googlenet_imagenet", ""),  # with the auxiliary losses
        ("inception_v3_imagenet", ""),
        ("xception_imagenet", ""),
        ("resnet_imagenet", "50,v2"),
        ("densenet_imagenet", "121"),
    ],
)
def test_runlocal_trains_every_family(tmp_path, name, arg):
    c = _get(name, ",".join(filter(None, [arg, "runlocal"])))
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == c.num_train_steps
    assert np.isfinite(summary["test_loss"])


@pytest.mark.slow  # 29-46 s on 2 cores
def test_finetune_from_torchvision_weights(tmp_path):
    """init_from + freeze: frozen layers keep torchvision's weights and BN statistics."""
    torch_oracle.torchvision()
    from experiments import make_init_weights

    path = tmp_path / "resnet18.pth"
    make_init_weights.make("resnet18", str(path), seed=1)
    state = {k: v.numpy() for k, v in __import__("torch").load(path).items()}
    c = _get("resnet18_cifar10_finetune", "runlocal")
    c.init_from.path = str(path)
    c.num_train_steps = 3
    c.checkpoint_every_steps = 3
    # CIFAR-sized synthetic data keeps the test short (the config's CIFAR-10 evaluation
    # alone is 10,000 images).
    c.dataset = "synthetic"
    c.dataset_options = {"train_size": 64, "test_size": 16}
    c.eval_batch_size = 16
    summary = train_and_evaluate(c, str(tmp_path / "run"))
    assert summary["steps"] == 3
    tree = Checkpointer(str(tmp_path / "run" / "checkpoints")).restore()
    params, stats = tree["params"], tree["batch_stats"]
    # Frozen: the stem and layer1, their BN statistics included, are torchvision's.
    np.testing.assert_array_equal(
        params["conv1"]["kernel"], state["conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        params["layer1_0"]["conv2"]["kernel"], state["layer1.0.conv2.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(stats["bn1"]["mean"], state["bn1.running_mean"])
    np.testing.assert_array_equal(
        stats["layer1_1"]["bn2"]["var"], state["layer1.1.bn2.running_var"]
    )
    # Trained: later layers moved away from the loaded values, BN statistics updated.
    loaded = state["layer3.0.conv1.weight"].transpose(2, 3, 1, 0)
    assert not np.allclose(params["layer3_0"]["conv1"]["kernel"], loaded)
    assert not np.allclose(stats["layer2_0"]["bn1"]["mean"], state["layer2.0.bn1.running_mean"])
    # The head is new: 10 classes.
    assert params["fc"]["kernel"].shape == (512, 10)


def test_finetune_config_errors(tmp_path):
    c = _get("resnet18_cifar10_finetune", "runlocal")
    c.init_from.path = str(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="make_init_weights --model=resnet18"):
        train_and_evaluate(c, str(tmp_path / "a"))
    c = _get("resnet18_cifar10_finetune", "runlocal")
    c.init_from.name = "resnet999"
    with pytest.raises(ValueError, match=r"`config.init_from.name` \(='resnet999'\)"):
        train_and_evaluate(c, str(tmp_path / "b"))
    c = _get("resnet18_cifar10_finetune", "runlocal")
    c.freeze = ("^layer9",)
    c.init_from = None
    with pytest.raises(ValueError, match=r"freeze pattern '\^layer9' matches no parameter"):
        train_and_evaluate(c, str(tmp_path / "c"))
