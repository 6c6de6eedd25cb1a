"""The ops under hostile arguments: integer overflow and absurd sizes.

* Integer convolutions add up in a wide integer type (``int32``, ``int64`` with
  ``jax_enable_x64``), never in the inputs' own narrow type, on every path.
* A padding, dilation, stride or output shape that would make a dimension longer than
  ``MAX_DIMENSION`` (``2**31 - 1``) or an array larger than ``MAX_ELEMENTS`` is a
  ``ValueError`` naming the argument, raised before any XLA code is built.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from cnn_jax import ops
from cnn_jax.ops import shapes
from tests import reference

WIDE_SIGNED = jax.dtypes.canonicalize_dtype(np.int64)
WIDE_UNSIGNED = jax.dtypes.canonicalize_dtype(np.uint64)


def _wide(dtype):
    return WIDE_UNSIGNED if jnp.issubdtype(dtype, jnp.unsignedinteger) else WIDE_SIGNED


def _int64_valid_conv(x, k):
    """A 2-D 'VALID' convolution in numpy int64: the sum over the window of x * k."""
    windows = sliding_window_view(x.astype(np.int64), k.shape[:2], axis=(1, 2))
    # windows: (N, H', W', C, kh, kw); k: (kh, kw, C, C_out)
    return np.einsum("nhwcij,ijcd->nhwd", windows, k.astype(np.int64))


def _exact(ref):
    """A float64 reference of integer inputs, as int64 (exact below 2**53)."""
    assert np.all(ref == np.round(ref)) and np.abs(ref).max() < 2**53
    return np.round(ref).astype(np.int64)


# --------------------------------------------------------------------------- item 9


@pytest.mark.parametrize("fast", [True, False, "auto"])
def test_int8_conv_of_100s_is_90000_not_wrapped(fast):
    """100 x 100 summed over a 3x3 window is 90000, not int8's wrapped -112."""
    x = np.full((1, 5, 5, 1), 100, np.int8)
    k = np.full((3, 3, 1, 1), 100, np.int8)
    with ops.use_fast_paths(fast):
        got = ops.conv(jnp.asarray(x), jnp.asarray(k), padding="VALID")
    assert got.dtype == WIDE_SIGNED
    np.testing.assert_array_equal(np.asarray(got), _int64_valid_conv(x, k))
    assert int(got[0, 0, 0, 0]) == 90000
    # The narrow type's wrapped result is one cast away (two's complement is mod 2**8).
    assert int(got.astype(jnp.int8)[0, 0, 0, 0]) == -112


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32])
@pytest.mark.parametrize("fast", [True, False])
def test_integer_conv_matches_numpy_int64(dtype, fast):
    """Random full-range values, few and many input channels, strided and dilated."""
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    # Full range for 8 bits; wider types within what int32 sums hold (72 products).
    lo, hi = (info.min, info.max) if info.bits == 8 else (-(2**12), 2**12)
    for c_in, strides, dilation in [(1, 1, 1), (3, 2, 1), (8, 1, 2)]:
        x = rng.integers(lo, hi, (2, 7, 6, c_in), endpoint=True).astype(dtype)
        k = rng.integers(lo, hi, (3, 3, c_in, 4), endpoint=True).astype(dtype)
        with ops.use_fast_paths(fast):
            got = ops.conv(x, k, strides=strides, dilation=dilation, padding="SAME")
        want = reference.conv_ref(
            x.astype(np.int64), k, strides=strides, dilation=dilation, padding="SAME"
        )
        assert got.dtype == _wide(dtype)
        np.testing.assert_array_equal(np.asarray(got).astype(np.int64), _exact(want))


@pytest.mark.parametrize("fast", [True, False])
def test_integer_conv_family_is_wide(fast):
    """Depthwise, grouped, separable, transposed (tiled too), local and tiled convolutions."""
    rng = np.random.default_rng(1)

    def ints(*shape):
        return rng.integers(-128, 128, shape).astype(np.int8)

    x, b = ints(2, 6, 6, 4), ints(8)
    dw, gk, pw = ints(3, 3, 1, 8), ints(3, 3, 2, 8), ints(8, 5)
    lc, tk = ints(4, 4, 3, 3, 4, 5), ints(2, 2, 3, 3, 4, 5)
    y, tr = ints(2, 3, 3, 8), ints(2, 2, 4, 8)
    x64 = x.astype(np.int64)
    with ops.use_fast_paths(fast):
        cases = [
            (
                ops.depthwise_conv(x, dw, b),
                reference.conv_ref(x64, dw, b, padding="SAME", groups=4),
            ),
            (
                ops.conv(x, gk, b, groups=2),
                reference.conv_ref(x64, gk, b, padding="SAME", groups=2),
            ),
            (ops.separable_conv(x, dw, pw), reference.separable_ref(x64, dw, pw, padding="SAME")),
            (
                ops.conv_transpose(y, tr, strides=2),  # kernel == stride: the tiles path
                reference.conv_transpose_ref(y.astype(np.int64), tr, strides=2),
            ),
            (
                ops.conv_transpose(y, gk, strides=2, groups=2, padding=1),
                reference.conv_transpose_ref(
                    y.astype(np.int64), gk, strides=2, groups=2, padding=1
                ),
            ),
            (ops.locally_connected(x, lc), reference.locally_connected_ref(x64, lc)),
            (ops.tiled_conv(x, tk), reference.tiled_conv_ref(x64, tk)),
        ]
    for i, (got, want) in enumerate(cases):
        assert got.dtype == WIDE_SIGNED, i
        np.testing.assert_array_equal(
            np.asarray(got).astype(np.int64), _exact(want), err_msg=str(i)
        )
    assert np.abs(np.concatenate([np.ravel(w) for _, w in cases])).max() > 127


def test_float_convs_keep_their_dtype():
    x = jnp.ones((1, 4, 4, 2), jnp.bfloat16)
    k = jnp.ones((3, 3, 2, 2), jnp.bfloat16)
    assert ops.conv(x, k).dtype == jnp.bfloat16
    assert ops.conv_transpose(x, k).dtype == jnp.bfloat16
    assert ops.conv(x.astype(jnp.float32), k).dtype == jnp.float32


# --------------------------------------------------------------------------- item 17

X = jnp.ones((1, 4, 4, 1), jnp.float32)
K = jnp.ones((3, 3, 1, 1), jnp.float32)
BIG = 2**31  # one past the int32 range: MAX_DIMENSION + 1


def test_limits_are_the_int32_range():
    from cnn_jax.ops import limits

    assert limits.MAX_DIMENSION == 2**31 - 1
    assert limits.MAX_ELEMENTS == 2**40


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: ops.conv(X, K, padding=10**12), "padding"),
        (lambda: ops.conv(X, K, padding=((BIG, 0), (0, 0))), "padding"),
        (lambda: ops.conv(X, K, padding="SAME", dilation=2**40), "dilation"),
        (lambda: ops.conv(X, K, padding=10**6), "padding"),  # 4e12 output elements
        (lambda: ops.conv(X, K, padding=10**6, padding_mode="replicate"), "padding"),
        (lambda: ops.depthwise_conv(X, K, padding=10**12), "padding"),
        (lambda: ops.locally_connected(X, K[None, None], padding=10**12), "padding"),
        (lambda: ops.conv_transpose(X, K, strides=2**40), "strides"),
        (lambda: ops.conv_transpose(X, K, dilation=2**40), "dilation"),
        (lambda: ops.conv_transpose(X, K, strides=2**20), "strides"),  # 2**42 elements
        (lambda: ops.max_pool(X, 2, padding=10**12), "padding"),
        (lambda: ops.avg_pool(X, 2, padding=BIG), "padding"),
        (lambda: ops.lp_pool(X, 2, p=2.0, padding="SAME", dilation=2**40), "dilation"),
        # 2**42 outputs, each window seeing the input (a wider padding is refused anyway)
        (lambda: ops.max_pool(X, 2**21, strides=1, padding=2**21 - 1), "padding"),
        (lambda: ops.max_pool_with_indices(X, 2**21, strides=1, padding=2**21 - 1), "padding"),
        (lambda: ops.avg_pool(X, 2, padding=2 * 10**6), "padding"),  # 1e12 x 4 outputs
        (lambda: ops.adaptive_avg_pool(X, 10**12), "output_size"),
        (lambda: ops.adaptive_max_pool(X, (2**21, 2**21)), "output_size"),
        (lambda: ops.max_unpool(X, X.astype(jnp.int32), 10**12), "output_shape"),
    ],
)
def test_absurd_sizes_are_named_errors(call, name):
    with pytest.raises(ValueError, match=rf"`{name}` \(="):
        call()


def test_absurd_sizes_fail_before_tracing():
    """The check is Python arithmetic: no XLA shape is built (``eval_shape`` raises too)."""
    spec = jax.ShapeDtypeStruct((1, 4, 4, 1), jnp.float32)
    with pytest.raises(ValueError, match="2147483647"):
        jax.eval_shape(lambda x: ops.conv(x, K, padding=10**12), spec)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: shapes.conv_output_size(4, 3, padding=10**12), "padding"),
        (lambda: shapes.conv_output_size(4, 3, padding="SAME", dilation=2**40), "dilation"),
        (lambda: shapes.pool_output_size((4, 4), 2, padding=10**12), "padding"),
        (lambda: shapes.pool_output_size(4, 2, padding=10**12, ceil_mode=True), "padding"),
        (lambda: shapes.conv_transpose_output_size(4, 3, stride=2**40), "stride"),
        (lambda: shapes.conv_transpose_output_size(4, 3, dilation=2**40), "dilation"),
        (lambda: shapes.conv_transpose_output_size(4, 3, 2**40, "SAME"), "stride"),
        (lambda: shapes.padding_amounts(10**12, 4, 3), "padding"),
        (lambda: shapes.padding_amounts("SAME", 4, 3, dilation=2**40), "dilation"),
    ],
)
def test_shape_helpers_refuse_absurd_sizes(call, name):
    with pytest.raises(ValueError, match=rf"`{name}` \(="):
        call()


def test_sizes_at_the_limit_are_accepted():
    """The bound is inclusive, and large but plausible sizes pass."""
    m = 2**31 - 1
    assert shapes.conv_output_size(m - 2, 3) == m - 4
    assert shapes.conv_output_size(1, 1, padding=[((m - 1) // 2,) * 2]) == m
    assert shapes.conv_transpose_output_size(2, 1, stride=m - 2) == m - 1
    out = ops.conv(X, K, padding=(300, 0))  # 602 x 2 outputs
    assert out.shape == (1, 602, 2, 1)
