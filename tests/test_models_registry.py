"""The model registry: ``cnn_jax.models.MODELS``, ``get_model`` and ``model_class``."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from cnn_jax import models


def test_model_registry():
    assert models.model_class("resnet50") is models.ResNet
    with pytest.raises(ValueError, match="unknown model 'resnet5'"):
        models.get_model("resnet5")
    with pytest.raises(TypeError, match=r"has no attributes \['widht'\]"):
        models.get_model("vgg16", widht=2)
    m = models.get_model("resnet18", num_classes=7)
    shapes = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    assert shapes["params"]["fc"]["kernel"].shape == (512, 7)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_checks_num_classes(name):
    """Every registered model is a flax module class (through its partials) that names a
    bad ``num_classes`` and its value when it is built."""
    cls = models.model_class(name)
    assert issubclass(cls, nn.Module)
    assert models.MODELS[name] is cls or isinstance(models.MODELS[name], functools.partial)
    with pytest.raises(ValueError, match=r"`num_classes` \(=0\)"):
        models.get_model(name, num_classes=0)
