"""cnn_jax.ops.winograd: the 3x3 'SAME' convolution by Winograd's F(4x4, 3x3).

References: ``tests.reference.conv_ref`` (numpy, float64, one einsum per kernel tap)
for the values; ``lax.conv_general_dilated``'s own derivative for both cotangents;
``jax.test_util.check_grads`` for the derivative of the pre-transformed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from cnn_jax import ops
from tests.reference import conv_ref

DN = ("NHWC", "HWIO", "NHWC")


def _lax_conv(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN)


def _data(shape, c_out, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(dtype)
    k = (rng.normal(size=(3, 3, shape[-1], c_out)) / np.sqrt(9 * shape[-1])).astype(dtype)
    return x, k


# sides that are and are not multiples of the 4x4 tile, a single pixel, a batch
SHAPES = [(2, 8, 8, 3), (1, 7, 5, 4), (1, 1, 1, 2), (3, 13, 6, 5), (1, 16, 12, 16)]


@pytest.mark.parametrize("shape", SHAPES)
def test_equals_direct_convolution(shape):
    x, k = _data(shape, 6)
    want = conv_ref(x.astype(np.float64), k, padding="SAME")
    got = ops.winograd_conv3x3(jnp.asarray(x), jnp.asarray(k))
    assert got.shape == want.shape and got.dtype == jnp.float32
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=3e-5 * scale)
    got_t = ops.winograd_conv3x3_transformed(x, ops.winograd_kernel(k))
    np.testing.assert_allclose(got_t, want, rtol=0, atol=3e-5 * scale)


def test_transforms_are_exact_in_float64():
    """In float64 the result is a direct convolution's to about 1e-13: the matrices are right."""
    x, k = _data((2, 9, 11, 7), 5, seed=3, dtype=np.float64)
    want = conv_ref(x, k, padding="SAME")
    with jax.enable_x64(True):
        got = np.asarray(ops.winograd_conv3x3(jnp.asarray(x), jnp.asarray(k)))
        assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_float32_error_on_wide_layers():
    """512 channels: within 3e-5 of the largest output (the module docstring says about
    2e-5), and more than a direct float32 convolution's deviation."""
    x, k = _data((1, 8, 8, 512), 512, seed=5)
    want = conv_ref(x.astype(np.float64), k, padding="SAME")
    scale = np.abs(want).max()
    dev = np.abs(np.asarray(ops.winograd_conv3x3(jnp.asarray(x), jnp.asarray(k))) - want).max()
    dev_direct = np.abs(np.asarray(jax.jit(_lax_conv)(x, k)) - want).max()
    assert dev <= 3e-5 * scale
    assert dev > dev_direct


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_16_bit_inputs_are_computed_in_float32(dtype):
    """Rounded once at the end: as close as a direct convolution in that dtype."""
    x, k = _data((2, 13, 10, 64), 32, seed=6)
    xl, kl = jnp.asarray(x, dtype), jnp.asarray(k, dtype)
    want = conv_ref(np.asarray(xl, np.float64), np.asarray(kl, np.float64), padding="SAME")
    got = ops.winograd_conv3x3(xl, kl)
    assert got.dtype == dtype
    scale = np.abs(want).max()
    dev = np.abs(np.asarray(got, np.float64) - want).max()
    dev_direct = np.abs(np.asarray(_lax_conv(xl, kl), np.float64) - want).max()
    assert dev <= 1.5 * dev_direct + 1e-6 * scale
    u = ops.winograd_kernel(kl)
    assert u.dtype == jnp.float32
    dx = jax.grad(lambda x: jnp.sum(ops.winograd_conv3x3(x, kl).astype(jnp.float32)))(xl)
    assert dx.dtype == dtype


def test_vmap_over_inputs_and_kernels():
    x, k = _data((3, 1, 7, 9, 4), 5, seed=8)
    ks = np.stack([k, 2 * k, -k]).astype(np.float32)
    got = jax.vmap(ops.winograd_conv3x3)(jnp.asarray(x), jnp.asarray(ks))
    for i in range(3):
        want = conv_ref(x[i].astype(np.float64), ks[i], padding="SAME")
        np.testing.assert_allclose(got[i], want, rtol=0, atol=3e-5 * np.abs(want).max())


def test_kernel_transform_shape_and_values():
    """The interpolation points' meaning, not the module's matrix: at the point 0 the
    kernel polynomial is its first tap, at infinity its last; the transform row of
    point 0 carries Lavin & Gray's scale 1/4 (``6 * i + j`` indexes the 6x6 tile)."""
    _, k = _data((1, 4, 4, 2), 3, seed=1, dtype=np.float64)
    with jax.enable_x64(True):
        u = np.asarray(ops.winograd_kernel(jnp.asarray(k)))
        u2, u2_t = (np.asarray(a) for a in ops.winograd_transforms(jnp.asarray(k)))
    assert u.shape == (36, 2, 3) and u2_t.shape == (36, 3, 2)
    np.testing.assert_array_equal(u2, u)
    np.testing.assert_allclose(u[0], k[0, 0] / 16, atol=1e-14)  # (0, 0)
    np.testing.assert_allclose(u[5], k[0, 2] / 4, atol=1e-14)  # (0, infinity)
    np.testing.assert_allclose(u[30], k[2, 0] / 4, atol=1e-14)  # (infinity, 0)
    np.testing.assert_allclose(u[35], k[2, 2], atol=1e-14)  # (infinity, infinity)
    # u_t transforms the flipped, channel-swapped kernel
    np.testing.assert_allclose(u2_t[35], k[0, 0].T, atol=1e-14)


@pytest.mark.parametrize("shape", [(2, 6, 7, 3), (1, 9, 4, 8)])
def test_derivatives_equal_lax(shape):
    x, k = _data(shape, 5, seed=2)
    g = np.random.default_rng(7).normal(size=(*shape[:3], 5)).astype(np.float32)
    want_dx, want_dk = jax.vjp(_lax_conv, x, k)[1](g)
    y, vjp = jax.vjp(ops.winograd_conv3x3, jnp.asarray(x), jnp.asarray(k))
    assert y.shape == (*shape[:3], 5)
    dx, dk = vjp(jnp.asarray(g))
    np.testing.assert_allclose(dx, want_dx, rtol=0, atol=3e-5 * np.abs(want_dx).max())
    np.testing.assert_allclose(dk, want_dk, rtol=1e-5, atol=1e-5 * np.abs(want_dk).max())
    # under jit and through a loss: the same numbers
    loss = jax.jit(jax.grad(lambda x, k: jnp.sum(ops.winograd_conv3x3(x, k) * g), (0, 1)))
    dx2, dk2 = loss(x, k)
    np.testing.assert_allclose(dx2, want_dx, rtol=0, atol=3e-5 * np.abs(want_dx).max())
    np.testing.assert_allclose(dk2, want_dk, rtol=1e-5, atol=1e-5 * np.abs(want_dk).max())


def test_transformed_form_gradients_numerically():
    x, k = _data((1, 5, 6, 2), 3, seed=4, dtype=np.float64)
    with jax.enable_x64(True):
        u = ops.winograd_kernel(jnp.asarray(k))
        check_grads(ops.winograd_conv3x3_transformed, (jnp.asarray(x), u), order=1, modes="rev")
        check_grads(ops.winograd_conv3x3, (jnp.asarray(x), jnp.asarray(k)), order=1, modes="rev")


def test_bad_arguments_name_themselves():
    x, k = _data((1, 8, 8, 4), 2)
    with pytest.raises(ValueError, match=r"`x` must have rank 4"):
        ops.winograd_conv3x3(x[0], k)
    with pytest.raises(TypeError, match="`x` must be an array"):
        ops.winograd_conv3x3([[1.0]], k)
    with pytest.raises(TypeError, match=r"floating-point.*int32"):
        ops.winograd_conv3x3(jnp.ones((1, 4, 4, 4), jnp.int32), k)
    with pytest.raises(ValueError, match=r"\(3, 3, C_in, C_out\), got \(5, 5, 4, 2\)"):
        ops.winograd_conv3x3(x, np.zeros((5, 5, 4, 2), np.float32))
    with pytest.raises(ValueError, match="3 input channels but `x` has 4"):
        ops.winograd_conv3x3(x, np.zeros((3, 3, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"`kernel` must have shape"):
        ops.winograd_kernel(np.zeros((3, 3, 4), np.float32))
    with pytest.raises(
        ValueError, match=r"`u` must be winograd_kernel\(kernel\).*\(36, 4, C_out\)"
    ):
        ops.winograd_conv3x3_transformed(x, np.zeros((16, 4, 2), np.float32))
