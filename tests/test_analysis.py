"""cnn_jax.analysis: equivariance measures (exact for convolutions without padding
effects) against numpy, and signal propagation at initialization."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import analysis, ops
from cnn_jax.layers import Conv
from cnn_jax.models import PlainInit

KEY = jax.random.key(0)
X = jax.random.normal(KEY, (2, 20, 20, 3))
K = jax.random.normal(jax.random.key(1), (5, 5, 3, 4))


def _np_valid_conv(x, k):
    """Cross-correlation, 'VALID', stride 1: a numpy loop."""
    n, h, w, _ = x.shape
    kh, kw, _, co = k.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, co))
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            out[:, i, j] = np.einsum("nhwc,hwco->no", x[:, i : i + kh, j : j + kw], k)
    return out


def test_translate_against_numpy():
    x = np.asarray(X)
    np.testing.assert_array_equal(analysis.translate(x, (2, -3)), np.roll(x, (2, -3), (1, 2)))
    z = np.asarray(analysis.translate(x, (2, -3), mode="zeros"))
    ref = np.zeros_like(x)
    ref[:, 2:, :-3] = x[:, :-2, 3:]
    np.testing.assert_array_equal(z, ref)


@pytest.mark.parametrize("shift", [(0, 0), (1, 0), (2, -3), (-4, 5)])
def test_valid_conv_is_exactly_translation_equivariant(shift):
    def f(z):
        return ops.conv(z, K, padding="VALID")

    np.testing.assert_allclose(f(X), _np_valid_conv(np.asarray(X), np.asarray(K)), atol=1e-4)
    assert analysis.translation_equivariance_error(f, X, shift) < 1e-6


def test_circular_padding_is_equivariant_everywhere_and_zero_padding_is_not():
    circular = Conv(4, 5, padding="SAME", padding_mode="circular")
    zeros = Conv(4, 5, padding="SAME")
    v = circular.init(KEY, X)
    err_c = analysis.translation_equivariance_error(lambda z: circular.apply(v, z), X, (3, 3))
    assert err_c < 1e-6
    # 'SAME' zero padding: exact two pixels (k // 2) away from the border only.
    full = analysis.translation_equivariance_error(lambda z: zeros.apply(v, z), X, (3, 3))
    inner = analysis.translation_equivariance_error(
        lambda z: zeros.apply(v, z), X, (3, 3), margin=2
    )
    assert full > 0.05 and inner < 1e-6


def test_stride_two_equivariant_for_even_shifts_only():
    def f(z):
        return ops.conv(z, K, strides=2, padding="VALID")

    assert analysis.translation_equivariance_error(f, X, (2, 4), stride=2) < 1e-6
    with pytest.raises(ValueError, match="multiple of `stride`"):
        analysis.translation_equivariance_error(f, X, (1, 0), stride=2)


def test_error_is_the_relative_l2_norm():
    # f multiplies by a fixed mask: f(Tx) - T f(x) is known in closed form.
    mask = np.ones((1, 20, 20, 1), np.float32)
    mask[:, :, :10] = 2.0
    x = np.asarray(X)

    def f(z):
        return z * mask

    got = analysis.translation_equivariance_error(f, x, (0, 1))
    y = x * mask
    want_rows = np.roll(y, 1, 2)[:, :, 1:]
    have = (np.roll(x, 1, 2) * mask)[:, :, 1:]
    ref = np.linalg.norm(have - want_rows) / np.linalg.norm(want_rows)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_rotation_and_scaling():
    x = np.asarray(X[:, :, :, :1])
    np.testing.assert_array_equal(analysis.rotate(x, 90.0), np.rot90(x, 1, axes=(1, 2)))
    np.testing.assert_allclose(analysis.scale(x, 1.0), x, atol=1e-6)
    iso = jnp.ones((3, 3, 1, 1)) / 9.0
    rnd = jax.random.normal(KEY, (3, 3, 1, 1))

    def conv(k):
        return lambda z: ops.conv(z, k, padding="SAME")

    # A kernel with the square's symmetry commutes with a 90-degree rotation exactly;
    # a random kernel does not.
    assert analysis.rotation_equivariance_error(conv(iso), x, 90.0) < 1e-6
    assert analysis.rotation_equivariance_error(conv(rnd), x, 90.0) > 0.2
    assert analysis.scale_equivariance_error(conv(rnd), x, 1.3) > analysis.scale_equivariance_error(
        conv(rnd), x, 1.05
    )


def test_invariance_grows_with_pooling():
    x = jnp.zeros((1, 32, 32, 1)).at[0, 10:20, 12:18, 0].set(1.0)

    def pooled(z, n):
        for _ in range(n):
            z = ops.avg_pool(z, 2)
        return z

    changes = [analysis.invariance_change(lambda z, n=n: pooled(z, n), x, (1, 1)) for n in range(4)]
    assert all(a > b for a, b in itertools.pairwise(changes)), changes
    gap = analysis.invariance_change(lambda z: jnp.mean(z, axis=(1, 2)), x, (3, 2))
    assert gap < 1e-6  # the content stays inside the frame: the mean is unchanged


def test_equivariance_errors_name_the_argument():
    f = lambda z: z  # noqa: E731
    with pytest.raises(ValueError, match="`x`"):
        analysis.translation_equivariance_error(f, X[0], (1, 1))
    with pytest.raises(ValueError, match="`shift`"):
        analysis.translate(X, (1,))
    with pytest.raises(ValueError, match="`mode`"):
        analysis.translate(X, (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="nothing left"):
        analysis.translation_equivariance_error(f, X, (1, 1), margin=10)
    with pytest.raises(ValueError, match="`factor`"):
        analysis.scale(X, 0.0)
    with pytest.raises(ValueError, match="radius_fraction"):
        analysis.rotation_equivariance_error(f, X, 10.0, radius_fraction=2.0)
    with pytest.raises(TypeError, match="`degrees`"):
        analysis.rotate(X, "ninety")


def test_layer_signals_of_a_linear_chain_against_hand_computation():
    # Two dense layers without activation: y = x W1 W2, loss = CE(y). The gradient with
    # respect to the first layer's output is dL/dy W2^T.
    import flax.linen as nn
    import optax

    class Chain(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            h = nn.Dense(6, name="a")(x)
            return nn.Dense(3, name="b")(h), {}

    model = Chain()
    x = jax.random.normal(KEY, (5, 4))
    labels = jnp.array([0, 1, 2, 0, 1])
    v = model.init(KEY, x)
    sig = analysis.layer_signals(model, v, x, labels)
    assert [s.name for s in sig] == ["a", "b"] and [s.depth for s in sig] == [1, 2]
    p = v["params"]
    h = x @ p["a"]["kernel"] + p["a"]["bias"]
    y = h @ p["b"]["kernel"] + p["b"]["bias"]
    dy = jax.grad(lambda y: optax.softmax_cross_entropy_with_integer_labels(y, labels).mean())(y)
    dh = dy @ p["b"]["kernel"].T
    np.testing.assert_allclose(sig[0].activation_std, jnp.std(h), rtol=1e-5)
    np.testing.assert_allclose(sig[1].grad_std, jnp.std(dy), rtol=1e-5)
    np.testing.assert_allclose(sig[0].grad_std, jnp.std(dh), rtol=1e-5)
    np.testing.assert_allclose(sig[0].weight_grad_std, jnp.std(x.T @ dh), rtol=1e-4)


def test_init_signal_vanishes_for_small_and_is_kept_by_he():
    x = jax.random.normal(KEY, (8, 16, 16, 3))
    labels = jnp.arange(8) % 10

    def signals(**kw):
        model = PlainInit(depth=8, **kw)
        return analysis.layer_signals(model, model.init(KEY, x[:1]), x, labels)

    he = signals(kernel_init="he_normal")
    small = signals(kernel_init="small_random", init_stddev=0.01)
    zeros = signals(kernel_init="zeros")
    assert len(he) == 8  # 7 convolutions and the classifier
    ratio_he = he[-2].activation_std / he[0].activation_std
    ratio_small = small[-2].activation_std / small[0].activation_std
    assert 0.2 < ratio_he < 5 and ratio_small < 1e-6
    assert all(s.activation_std == 0 and s.grad_std == 0 for s in zeros[:-1])


def test_reinitialize_and_errors():
    model = PlainInit(depth=8)
    v = model.init(KEY, X[:1])
    p = analysis.reinitialize(v["params"], "small_random", KEY, stddev=0.02)
    k = p["net"]["layer3_0"]["conv1"]["kernel"]
    assert abs(float(jnp.std(k)) - 0.02) < 0.003
    assert not np.any(np.asarray(p["net"]["fc"]["bias"]))
    with pytest.raises(ValueError, match="no 'kernel'"):
        analysis.reinitialize({"x": {"bias": jnp.ones(3)}}, "zeros", KEY)
    with pytest.raises(ValueError, match="labels"):
        analysis.layer_signals(model, v, X[:2, :16, :16], jnp.array([1, 2, 3]))


def test_filter_tiles_scale_each_filter():
    from experiments.claims_filters import tile

    k = np.stack([np.full((5, 5, 3), v) + np.arange(5)[:, None, None] for v in (0.0, 9.0)], -1)
    img = tile(k, cols=2)
    assert img.shape == (7, 13, 3)
    np.testing.assert_allclose(img[1:6, 1, 0], np.linspace(0, 1, 5))  # filter 0, scaled
    np.testing.assert_allclose(img[1:6, 7, 0], np.linspace(0, 1, 5))  # filter 1, same
    assert tile(k[:, :, :1], cols=1).shape == (13, 7)
