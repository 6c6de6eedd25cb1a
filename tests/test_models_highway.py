"""Convolutional highway networks (Srivastava et al. 2015): formula, gate init, sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import highway
from tests.model_helpers import count, jit_o0, normal, output_shapes, rbg_key, template


def _layer_count(c):
    """Per highway layer: H's 3x3 kernel and norm, T's 3x3 kernel and bias."""
    return 9 * c * c + 2 * c + 9 * c * c + c


@pytest.mark.parametrize("depth", [10, 19, pytest.param(100, marks=pytest.mark.slow)])
def test_parameter_count_by_hand(depth):
    n = (depth - 4) // 3
    stem = 27 * 16 + 32
    downs = 9 * 16 * 32 + 64 + 9 * 32 * 64 + 128
    layers = n * sum(_layer_count(c) for c in (16, 32, 64))
    fc = 64 * 10 + 10
    assert count(template(highway.HighwayNet(depth=depth), 32)["params"]) == (
        stem + downs + layers + fc
    )


def test_shapes():
    logits, f = output_shapes(highway.HighwayNet(depth=10, num_classes=7), 32)
    assert logits == (2, 7)
    assert f == {
        "stem": (2, 32, 32, 16),
        "layer1": (2, 32, 32, 16),
        "layer2": (2, 16, 16, 32),
        "layer3": (2, 8, 8, 64),
        "pre_logits": (2, 64),
    }


def _layer_and_variables(gate_bias=-2.0, seed=0):
    layer = highway.HighwayLayer(8, gate_bias=gate_bias)
    x = jnp.asarray(normal((2, 6, 6, 8), 1))
    variables = jit_o0(layer.init)(rbg_key(seed), x)
    return layer, variables, x


@pytest.mark.parametrize("gate_bias", [-1.0, -3.0])
def test_gate_starts_near_sigmoid_of_its_bias(gate_bias):
    """At initialization ``T = sigmoid(W_T x + b_T)`` with ``b_T`` the negative bias:
    exactly ``sigmoid(b_T)`` on a zero input, and its median over a random input too
    (``W_T x`` is symmetric about 0)."""
    layer, variables, x = _layer_and_variables(gate_bias)
    np.testing.assert_array_equal(variables["params"]["conv_t"]["bias"], gate_bias)
    expected = 1 / (1 + np.exp(-gate_bias))
    t0 = layer.apply(variables, jnp.zeros_like(x), method=highway.HighwayLayer.gate)
    np.testing.assert_allclose(t0, expected, rtol=1e-6)
    t = np.asarray(layer.apply(variables, x, method=highway.HighwayLayer.gate))
    assert abs(np.median(t) - expected) < 0.03
    assert t.min() > 0 and t.max() < 1


def test_output_is_the_highway_formula():
    """``y = H(x) T(x) + x (1 - T(x))`` with the layer's own ``H`` and ``T``, in both
    modes; a gate pushed to 0 carries ``x``, to 1 gives ``H(x)``."""
    layer, variables, x = _layer_and_variables()

    def parts(v, train):
        h, _ = layer.apply(
            v, x, train, method=highway.HighwayLayer.transform, mutable=["batch_stats"]
        )
        t = layer.apply(v, x, method=highway.HighwayLayer.gate)
        y, _ = layer.apply(v, x, train, mutable=["batch_stats"])
        return h, t, y

    for train in (False, True):
        h, t, y = jit_o0(parts, static_argnums=1)(variables, train)
        np.testing.assert_allclose(y, h * t + x * (1 - t), rtol=1e-5, atol=1e-6)
    for bias, expect in ((-1e4, x), (1e4, None)):
        v = jax.tree.map(lambda a: a, variables)
        v["params"]["conv_t"]["bias"] = jnp.full_like(v["params"]["conv_t"]["bias"], bias)
        h, _, y = jit_o0(parts, static_argnums=1)(v, False)
        np.testing.assert_allclose(y, x if expect is not None else h, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("depth", [0, 9, 11, 10.0, True])
def test_bad_depth_names_the_value(depth):
    with pytest.raises(ValueError, match=rf"`depth` \(={depth!r}\)"):
        highway.HighwayNet(depth=depth)


def test_bad_arguments():
    assert [highway.highway_stage_size(d) for d in (10, 100)] == [2, 32]
    with pytest.raises(ValueError, match=r"`num_classes` \(=0\)"):
        highway.HighwayNet(num_classes=0)
    with pytest.raises(ValueError, match=r"`gate_bias` \(='-2'\)"):
        highway.HighwayNet(gate_bias="-2")
