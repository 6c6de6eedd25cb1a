"""intermediates.tap: names, shapes and values equal to manual sub-computations."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import ops
from cnn_jax.models import VGG, VGG19, CNNMnist
from cnn_jax.viz import tap, tap_names


def test_vgg19_has_every_paper_layer_name():
    """conv1_1 ... conv5_4, relu*, pool1..5 with VGG-19's shapes (abstract: no compute)."""
    model = VGG19(num_classes=10)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    v = jax.eval_shape(model.init, jax.random.key(0), x)
    names = tap_names(model, v, x)
    per_block = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4}
    widths = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
    for b, n in per_block.items():
        side = 32 // 2 ** (b - 1)
        for i in range(1, n + 1):
            for kind in ("conv", "relu"):
                assert names[f"{kind}{b}_{i}"][0] == (1, side, side, widths[b])
        assert names[f"pool{b}"][0] == (1, side // 2, side // 2, widths[b])
        assert f"conv{b}_{n + 1}" not in names
    assert names["features_34"][0] == (1, 2, 2, 512)  # conv5_4's module, torchvision index
    assert names["logits"][0] == (1, 10)


def test_vgg_taps_equal_manual_layers(rng):
    model = VGG((4, "M", 8, "M"), batch_norm=True, num_classes=3)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
    v = model.init(jax.random.key(0), x)
    got = tap(model, v, x, ["conv1_1", "bn1_1", "relu1_1", "pool1", "conv2_1", "block2"])
    p, s = v["params"], v["batch_stats"]
    conv = ops.conv(x, p["features_0"]["kernel"], p["features_0"]["bias"], padding=1)
    np.testing.assert_allclose(got["conv1_1"], conv, rtol=1e-5, atol=1e-5)
    bn = (conv - s["features_1"]["mean"]) / jnp.sqrt(s["features_1"]["var"] + 1e-5)
    bn = bn * p["features_1"]["scale"] + p["features_1"]["bias"]
    np.testing.assert_allclose(got["bn1_1"], bn, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["relu1_1"], jnp.maximum(bn, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        got["pool1"], ops.max_pool(jnp.maximum(bn, 0), 2), rtol=1e-4, atol=1e-5
    )
    conv2 = ops.conv(got["pool1"], p["features_4"]["kernel"], p["features_4"]["bias"], padding=1)
    np.testing.assert_allclose(got["conv2_1"], conv2, rtol=1e-4, atol=1e-5)
    assert got["block2"].shape == (2, 2, 2, 8)


def test_module_outputs_features_and_shadowing(rng):
    """CNNMnist: features 'hidden' (after ReLU) shadows the module 'hidden' (before)."""
    model = CNNMnist(widths=(4, 8), hidden=8)
    x = jnp.asarray(rng.normal(size=(2, 12, 12, 1)), jnp.float32)
    v = model.init(jax.random.key(0), x)
    got = tap(model, v, x, ["conv0_0", "conv0_0/__call__", "hidden", "hidden/__call__", "logits"])
    manual = ops.conv(x, v["params"]["conv0_0"]["kernel"], None, padding="SAME")
    np.testing.assert_allclose(got["conv0_0"], manual, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["conv0_0"], got["conv0_0/__call__"])
    np.testing.assert_allclose(got["hidden"], jnp.maximum(got["hidden/__call__"], 0))
    assert float(jnp.min(got["hidden/__call__"])) < 0  # really the pre-ReLU module output
    np.testing.assert_allclose(got["logits"], model.apply(v, x)[0], rtol=1e-6)
    # Under jit and grad: a gradient through a tapped activation.
    g = jax.grad(lambda xx: jnp.sum(tap(model, v, xx, "block1")["block1"]))(x)
    assert g.shape == x.shape and float(jnp.abs(g).sum()) > 0


class _Twice(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        d = nn.Dense(3, name="shared")
        h = d(x)
        h = d(jnp.tanh(h))
        return h, {}


def test_repeated_calls_are_numbered_and_unknown_names_listed():
    model = _Twice()
    x = jnp.ones((1, 3))
    v = model.init(jax.random.key(0), x)
    got = tap(model, v, x, ["shared#0", "shared#1"])
    np.testing.assert_allclose(got["shared#1"], model.apply(v, x)[0])
    with pytest.raises(
        ValueError, match="recorded 2 times; use one of \\['shared#0', 'shared#1'\\]"
    ):
        tap(model, v, x, "shared")
    with pytest.raises(ValueError, match="\\['nope'\\] are not taps of _Twice; known: "):
        tap(model, v, x, ["nope"])
    with pytest.raises(TypeError, match="`names` \\(=3\\)"):
        tap(model, v, x, 3)
