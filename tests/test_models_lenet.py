"""LeNet-5 (LeCun et al. 1998) as published, and its modern variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import LeNet5, LeNet5Modern
from cnn_jax.models.lenet import C3_TABLE, _PartialConv, rbf_centres, scaled_tanh
from cnn_jax.train import count_params


def test_lenet5_parameter_counts():
    x = jnp.zeros((1, 32, 32, 1))
    shapes = jax.eval_shape(LeNet5().init, jax.random.key(0), x)
    # C1 156 + S2 12 + C3 1,516 + S4 32 + C5 48,120 + F6 10,164 (LeCun et al. 1998).
    assert count_params(shapes["params"]) == 60_000
    assert (
        count_params(jax.eval_shape(LeNet5Modern().init, jax.random.key(0), x)["params"]) == 61_706
    )
    c3 = shapes["params"]["C3"]["kernel"]
    assert c3.shape == (5, 5, 60)  # only the 60 connections of Table I are parameters


def test_lenet5_c3_connection_table():
    model = LeNet5()
    x = jnp.zeros((1, 32, 32, 1))
    v = model.init(jax.random.key(0), x)
    _, feats = model.apply(v, x)
    assert feats["c3"].shape == (1, 10, 10, 16)
    # Perturbing S2 map 0 changes exactly the C3 maps connected to it.
    conv = _PartialConv(C3_TABLE)
    s2 = jax.random.normal(jax.random.key(1), (1, 14, 14, 6))
    p = conv.init(jax.random.key(2), s2)
    apply = jax.jit(conv.apply)
    base = apply(p, s2)
    for m in range(6):
        moved = apply(p, s2.at[..., m].add(1.0))
        changed = {int(c) for c in np.nonzero(np.abs(moved - base).sum(axis=(0, 1, 2)))[0]}
        assert changed == {o for o, row in enumerate(C3_TABLE) if m in row}


def test_squashing_and_rbf_output():
    """``f(+-1) = +-1`` (appendix A); the RBF logits are minus the squared distances to
    fixed +-1 codes."""
    np.testing.assert_allclose(scaled_tanh(jnp.array([-1.0, 0.0, 1.0])), [-1, 0, 1], atol=1e-4)
    codes = rbf_centres(10)
    assert codes.shape == (10, 84) and set(np.unique(codes)) == {-1.0, 1.0}
    np.testing.assert_array_equal(codes, rbf_centres(10))  # fixed
    model = LeNet5()
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 1))
    logits, f = jax.jit(lambda x: model.apply(model.init(jax.random.key(1), x), x))(x)
    expected = -np.sum((np.asarray(f["f6"])[:, None] - codes[None]) ** 2, axis=-1)
    np.testing.assert_allclose(logits, expected, rtol=1e-5)
    linear = LeNet5(rbf_output=False, num_classes=4)
    assert jax.eval_shape(linear.init_with_output, jax.random.key(1), x)[0][0].shape == (2, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`num_classes` \(=0\)"):
        LeNet5(num_classes=0)
    with pytest.raises(ValueError, match=r"`num_classes` \(=2\.5\)"):
        LeNet5Modern(num_classes=2.5)
    with pytest.raises(
        ValueError, match=r"`x` of shape \(N, 32, 32, C\), got shape \(1, 28, 28, 1\)"
    ):
        LeNet5().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"`x`.*\(32, 32, 1\)"):
        LeNet5().init(jax.random.key(0), jnp.zeros((32, 32, 1)))
    with pytest.raises(ValueError, match=r"`x`.*\(1, 12, 12, 1\)"):
        LeNet5Modern().init(jax.random.key(0), jnp.zeros((1, 12, 12, 1)))
