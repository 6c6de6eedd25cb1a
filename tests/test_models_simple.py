"""``CNNMnist``, the small VGG-style network for digits."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.layers import BatchNorm
from cnn_jax.models import CNNMnist


def test_shapes_and_features():
    model = CNNMnist()
    x = jnp.zeros((2, 28, 28, 1))
    (logits, f), v = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x))
    assert logits.shape == (2, 10)
    assert {k: tuple(a.shape) for k, a in f.items()} == {
        "block0": (2, 14, 14, 32),
        "block1": (2, 7, 7, 64),
        "hidden": (2, 256),
        "logits": (2, 10),
    }
    assert v["params"]["hidden"]["kernel"].shape == (7 * 7 * 64, 256)
    assert sorted(v["batch_stats"]) == [f"bn{b}_{j}" for b in range(2) for j in range(2)]


def test_injected_norm_and_dropout():
    """The injected norm is used; dropout acts in training only."""
    norm = functools.partial(BatchNorm, momentum=0.5)
    model = CNNMnist(norm=norm, dropout=0.5, widths=(4, 8), hidden=16)
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 1))

    @jax.jit
    def run(key):
        v = model.init(jax.random.key(1), x)
        (logits, _), updates = model.apply(
            v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
        )
        return model.apply(v, x)[0], logits, v["batch_stats"], updates["batch_stats"]

    evaluated, dropped, stats, new_stats = run(jax.random.key(2))
    evaluated2, dropped2, _, _ = run(jax.random.key(3))
    np.testing.assert_array_equal(evaluated, evaluated2)  # no dropout in evaluation
    assert not np.allclose(dropped, dropped2)
    # momentum 0.5: the running mean moves halfway to the batch mean (from 0)
    assert not np.allclose(new_stats["bn0_0"]["mean"], stats["bn0_0"]["mean"])


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`num_classes` \(=0\)"):
        CNNMnist(num_classes=0)
    with pytest.raises(ValueError, match=r"`widths` \(=\(32, 0\)\)"):
        CNNMnist(widths=(32, 0))
    with pytest.raises(ValueError, match=r"`hidden` \(=-1\)"):
        CNNMnist(hidden=-1)
    with pytest.raises(ValueError, match=r"`dropout` \(=1\.0\)"):
        CNNMnist(dropout=1.0)
    with pytest.raises(ValueError, match=r"`x`.*\(28, 28, 1\)"):
        CNNMnist().init(jax.random.key(0), jnp.zeros((28, 28, 1)))
    with pytest.raises(ValueError, match=r"at least 4x4 pixels, got shape \(1, 3, 3, 1\)"):
        CNNMnist().init(jax.random.key(0), jnp.zeros((1, 3, 3, 1)))
