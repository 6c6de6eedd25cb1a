"""Properties of the convolution ops: adjointness, gradients, causality, errors.

Value-by-value comparisons against numpy loops, scipy and PyTorch are in
test_conv_reference.py.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from cnn_jax import ops
from cnn_jax.ops import shapes

HIGHEST = lax.Precision.HIGHEST


def _rand(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _cases():
    """(ndim, in_size, kernel, stride, dilation, padding, groups) for the adjoint tests."""
    out = []
    grid = itertools.product(
        [1, 2],
        [1, 2, 3],
        [1, 2, 3],
        [1, 2],
        ["SAME", "VALID", "FULL", "CAUSAL", 1, "pairs"],
        [1, 2],
    )
    for ndim, k, s, d, padding, groups in grid:
        size = (7, 6)[:ndim]
        if padding == "pairs":
            padding = [(0, 2), (1, 0)][:ndim]
        out.append((ndim, size, k, s, d, padding, groups))
    out.append((3, (5, 4, 6), 3, 2, 1, "SAME", 1))
    out.append((3, (5, 4, 6), 2, (1, 2, 3), (2, 1, 1), [(1, 0), (0, 0), (2, 1)], 2))
    return out


ALL_CASES = _cases()
# A fixed, spread-out subsample keeps the suite fast; `-m slow` runs every case.
CASES = ALL_CASES[::5] + ALL_CASES[-2:]


def _conv_args(case):
    _, size, _, s, d, padding, groups = case
    return size, dict(strides=s, padding=padding, dilation=d, groups=groups)


def _adjoint_check(case, rng):
    size, kw = _conv_args(case)
    c_in, c_out, groups = 4, 6, kw["groups"]
    k = case[2]
    kernel = _rand(rng, *([k] * len(size)), c_in // groups, c_out)
    x = _rand(rng, 2, *size, c_in)
    fx = ops.conv(x, kernel, precision=HIGHEST, **kw)
    y = _rand(rng, *fx.shape)
    fty = ops.conv_transpose(y, kernel, output_shape=size, precision=HIGHEST, **kw)
    assert fty.shape == x.shape
    lhs = float(jnp.vdot(fx, y))
    rhs = float(jnp.vdot(x, fty))
    assert np.isclose(lhs, rhs, rtol=1e-4, atol=1e-3 * np.sqrt(fx.size)), (lhs, rhs)
    # ... and conv_transpose is exactly jax's VJP of conv with respect to x.
    _, vjp = jax.vjp(lambda t: ops.conv(t, kernel, precision=HIGHEST, **kw), x)
    np.testing.assert_allclose(fty, vjp(y)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose_is_the_adjoint_of_conv(case, rng):
    _adjoint_check(case, rng)


@pytest.mark.slow
@pytest.mark.parametrize("case", ALL_CASES)
def test_conv_transpose_is_the_adjoint_of_conv_all_cases(case, rng):
    _adjoint_check(case, rng)


@pytest.mark.parametrize("case", CASES[::3])
def test_conv_transpose_jacobian_is_the_transposed_jacobian(case, rng):
    size, kw = _conv_args(case)
    if len(size) > 1:
        size = size[:1]
        kw = dict(kw, padding=kw["padding"] if isinstance(kw["padding"], str) else 1)
    kernel = _rand(rng, case[2], 2 // kw["groups"], 2)
    x = _rand(rng, 1, *size, 2)
    y = ops.conv(x, kernel, precision=HIGHEST, **kw)
    jac_conv = jax.jacfwd(lambda t: ops.conv(t, kernel, precision=HIGHEST, **kw))(x)
    jac_t = jax.jacfwd(
        lambda t: ops.conv_transpose(t, kernel, output_shape=size, precision=HIGHEST, **kw)
    )(y)
    jc = np.asarray(jac_conv).reshape(y.size, x.size)
    jt = np.asarray(jac_t).reshape(x.size, y.size)
    np.testing.assert_allclose(jt, jc.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "s,a,d,k,p",
    [(2, 1, 1, 3, 1), (3, 2, 1, 4, 0), (2, 0, 2, 3, (1, 2)), (1, 0, 3, 2, 0), (2, 1, 3, 3, 2)],
)
def test_output_padding_agrees_with_output_shape(s, a, d, k, p, rng):
    pad = p if isinstance(p, int) else [p]
    y = _rand(rng, 2, 5, 3)
    kernel = _rand(rng, k, 2, 3)
    o = shapes.conv_transpose_output_size(5, k, s, pad, a, d)
    by_padding = ops.conv_transpose(y, kernel, strides=s, padding=pad, dilation=d, output_padding=a)
    assert by_padding.shape == (2, o, 2)
    if a < s:
        by_shape = ops.conv_transpose(
            y, kernel, strides=s, padding=pad, dilation=d, output_shape=(o,)
        )
        np.testing.assert_array_equal(by_padding, by_shape)


@pytest.mark.parametrize(
    "s,k,d,p",
    [(2, 3, 1, (1, 1)), (3, 3, 1, (0, 2)), (2, 4, 2, (3, 0)), (1, 3, 2, (0, 0)), (2, 2, 1, (2, 2))],
)
def test_fractionally_strided_view(s, k, d, p, rng):
    """conv_transpose == conv of the zero-dilated input with the flipped, transposed kernel."""
    i, c_in, c_out = 5, 3, 2
    y = _rand(rng, 2, i, i, c_out)
    kernel = _rand(rng, k, k, c_in, c_out)
    pad = [p, p]
    a = 1 if s > 1 else 0
    out = ops.conv_transpose(
        y, kernel, strides=s, padding=pad, dilation=d, output_padding=a, precision=HIGHEST
    )
    # Zero-dilate: insert s - 1 zeros between input positions (Dumoulin & Visin §4.5).
    yd = np.zeros((2, s * (i - 1) + 1, s * (i - 1) + 1, c_out), np.float32)
    yd[:, ::s, ::s, :] = np.asarray(y)
    e = d * (k - 1)
    lo, hi = e - p[0], e - p[1] + a
    flipped = np.asarray(kernel)[::-1, ::-1].transpose(0, 1, 3, 2)
    # Negative "padding" means cropping the dilated input.
    yd = np.pad(yd, ((0, 0), (max(lo, 0), max(hi, 0)), (max(lo, 0), max(hi, 0)), (0, 0)))
    crop_lo, crop_hi = max(-lo, 0), max(-hi, 0)
    yd = yd[:, crop_lo : yd.shape[1] - crop_hi, crop_lo : yd.shape[2] - crop_hi]
    direct = ops.conv(
        jnp.asarray(yd), jnp.asarray(flipped), padding="VALID", dilation=d, precision=HIGHEST
    )
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-5)


def test_same_transpose_output_shapes(rng):
    # Every o in (s(i-1), s*i] maps to i under a 'SAME' conv; each can be asked for.
    y = _rand(rng, 1, 4, 2)
    kernel = _rand(rng, 3, 5, 2)
    assert ops.conv_transpose(y, kernel, strides=3, padding="SAME").shape == (1, 12, 5)
    for o in range(10, 13):
        out = ops.conv_transpose(y, kernel, strides=3, padding="SAME", output_shape=(o,))
        assert out.shape == (1, o, 5)
        x = _rand(rng, 1, o, 5)
        lhs = jnp.vdot(ops.conv(x, kernel, strides=3, padding="SAME", precision=HIGHEST), y)
        rhs = jnp.vdot(
            x,
            ops.conv_transpose(
                y, kernel, strides=3, padding="SAME", output_shape=(o,), precision=HIGHEST
            ),
        )
        np.testing.assert_allclose(lhs, rhs, rtol=1e-5)


# --- gradients -----------------------------------------------------------------------------


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _r64(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float64)


GRAD_KW = [
    dict(strides=2, padding="SAME", dilation=1),
    dict(strides=1, padding="CAUSAL", dilation=2),
    dict(strides=(2, 1), padding=[(1, 0), (0, 2)], dilation=(1, 2)),
    dict(strides=1, padding=1, dilation=1, padding_mode="reflect"),
    dict(strides=1, padding="FULL", dilation=1, padding_mode="circular"),
    dict(strides=1, padding=2, dilation=1, padding_mode="replicate"),
]


@pytest.mark.parametrize("kw", GRAD_KW)
def test_check_grads_conv(kw, x64, rng):
    x, k, b = _r64(rng, 2, 6, 5, 4), _r64(rng, 3, 2, 2, 6), _r64(rng, 6)
    check_grads(
        lambda x, k, b: ops.conv(x, k, b, groups=2, **kw), (x, k, b), order=1, modes=("fwd", "rev")
    )


@pytest.mark.parametrize(
    "kw",
    [
        dict(strides=2, padding="SAME"),
        dict(strides=2, padding=1, output_padding=1, dilation=2),
        dict(padding="CAUSAL"),
    ],
)
def test_check_grads_conv_transpose(kw, x64, rng):
    y, k, b = _r64(rng, 2, 4, 3, 6), _r64(rng, 3, 2, 2, 6), _r64(rng, 4)
    check_grads(
        lambda y, k, b: ops.conv_transpose(y, k, b, groups=2, **kw),
        (y, k, b),
        order=1,
        modes=("fwd", "rev"),
    )


def test_check_grads_other_ops(x64, rng):
    x = _r64(rng, 1, 5, 4, 3)
    check_grads(
        lambda x, k: ops.depthwise_conv(x, k, strides=2), (x, _r64(rng, 3, 3, 1, 6)), order=1
    )
    check_grads(
        lambda x, d, p, b: ops.separable_conv(x, d, p, b, padding="VALID"),
        (x, _r64(rng, 3, 3, 1, 6), _r64(rng, 6, 4), _r64(rng, 4)),
        order=1,
    )
    check_grads(
        lambda x, k, b: ops.locally_connected(x, k, b, strides=(2, 1)),
        (x, _r64(rng, 2, 2, 3, 3, 3, 2), _r64(rng, 2, 2, 2)),
        order=1,
    )
    check_grads(
        lambda x, k, b: ops.tiled_conv(x, k, b, padding=1, padding_mode="reflect"),
        (x, _r64(rng, 2, 3, 3, 3, 3, 2), _r64(rng, 2, 3, 2)),
        order=1,
    )


# --- causality -----------------------------------------------------------------------------


@pytest.mark.parametrize("k,d", [(2, 1), (3, 1), (2, 4), (3, 3), (5, 2)])
def test_causal_jacobian_is_lower_triangular(k, d, rng):
    t = 20
    kernel = _rand(rng, k, 2, 3)
    x = _rand(rng, 1, t, 2)
    jac = jax.jacfwd(lambda x: ops.conv(x, kernel, padding="CAUSAL", dilation=d))(x)
    jac = np.abs(np.asarray(jac)).sum(axis=(0, 2, 3, 5))  # (t_out, t_in)
    assert jac.shape == (t, t)
    assert np.all(np.triu(jac, 1) == 0), "output t depends on an input after t"
    # ... and every output sees exactly the taps t, t - d, ..., t - d(k-1) that exist.
    for out_t in range(t):
        taps = [out_t - j * d for j in range(k) if out_t - j * d >= 0]
        assert sorted(np.nonzero(jac[out_t])[0].tolist()) == sorted(taps)


# --- jit and dtypes ----------------------------------------------------------------------


def test_ops_under_jit_and_bf16(rng):
    x = _rand(rng, 2, 8, 8, 4)
    k = _rand(rng, 3, 3, 4, 5)
    f = jax.jit(lambda x, k: ops.conv(x, k, strides=2, padding="SAME"))
    np.testing.assert_allclose(f(x, k), ops.conv(x, k, strides=2, padding="SAME"), rtol=1e-6)
    out = ops.conv(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16
    mixed = ops.conv(x.astype(jnp.bfloat16), k)  # promoted, not an XLA error
    assert mixed.dtype == jnp.float32


# --- bad input -----------------------------------------------------------------------------


X = jnp.zeros((2, 8, 8, 4))
K = jnp.zeros((3, 3, 4, 6))


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: ops.conv(X[0], K), ValueError, "`kernel` must have rank 3"),
        (lambda: ops.conv(jnp.zeros((2, 4)), K), ValueError, "at least one spatial dimension"),
        (lambda: ops.conv(X, K[0]), ValueError, "`kernel` must have rank 4"),
        (
            lambda: ops.conv(X, K, groups=3),
            ValueError,
            "`groups` \\(=3\\) must divide the input channels \\(=4\\)",
        ),
        (lambda: ops.conv(X, K, groups=0), ValueError, "`groups` \\(=0\\) must be positive"),
        (lambda: ops.conv(X, K, groups=2.0), TypeError, "`groups` must be an int"),
        (lambda: ops.conv(X, K, groups=2), ValueError, "expects 4 x groups \\(=2\\) = 8 input"),
        (
            lambda: ops.conv(X, jnp.zeros((3, 3, 2, 5)), groups=2),
            ValueError,
            "must divide the output channels \\(=5\\)",
        ),
        (lambda: ops.conv(X, K, strides=0), ValueError, "`strides` \\(=0\\) must be positive"),
        (lambda: ops.conv(X, K, strides=(1, 2, 1)), ValueError, "`strides` \\(=\\(1, 2, 1\\)\\)"),
        (lambda: ops.conv(X, K, dilation=-1), ValueError, "`dilation` \\(=-1\\) must be positive"),
        (lambda: ops.conv(X, K, padding="HALF"), ValueError, "`padding` \\(='HALF'\\)"),
        (lambda: ops.conv(X, K, padding=-1), ValueError, "`padding` \\(=-1\\) must be non-neg"),
        (
            lambda: ops.conv(X, K, padding_mode="mirror"),
            ValueError,
            "`padding_mode` \\(='mirror'\\)",
        ),
        (
            lambda: ops.conv(X, jnp.zeros((9, 3, 4, 6)), padding="VALID"),
            ValueError,
            "kernel size 9 .* larger than the padded input",
        ),
        (lambda: ops.conv(X, K, dilation=4, padding="VALID"), ValueError, "dilated to 9"),
        (
            lambda: ops.conv(X, K, padding=8, padding_mode="reflect"),
            ValueError,
            "smaller than the input size \\(=8\\) with padding_mode='reflect'",
        ),
        (
            lambda: ops.conv(X, K, padding=9, padding_mode="circular"),
            ValueError,
            "must not exceed the input size",
        ),
        (lambda: ops.conv(X, K, bias=jnp.zeros(5)), ValueError, "`bias` must have shape \\(6,\\)"),
        (lambda: ops.conv([[1.0]], K), TypeError, "`x` must be an array"),
        (lambda: ops.conv_transpose(X, K), ValueError, "`y` has 4 channels but `kernel`"),
        (
            lambda: ops.conv_transpose(jnp.zeros((1, 4, 4, 6)), K, strides=2, output_padding=2),
            ValueError,
            "`output_padding` \\(=\\(2, 2\\)\\) must be non-negative and smaller",
        ),
        (
            lambda: ops.conv_transpose(jnp.zeros((1, 4, 4, 6)), K, strides=2, output_shape=(11, 8)),
            ValueError,
            "`output_shape` \\(=\\(11, 8\\)\\) is not reachable",
        ),
        (
            lambda: ops.conv_transpose(jnp.zeros((1, 4, 4, 6)), K, output_shape=(6,)),
            ValueError,
            "`output_shape` \\(=\\(6,\\)\\) must have one entry per spatial",
        ),
        (
            lambda: ops.conv_transpose(
                jnp.zeros((1, 4, 4, 6)), K, strides=2, output_shape=(9, 9), output_padding=1
            ),
            ValueError,
            "not both",
        ),
        (
            lambda: ops.conv_transpose(
                jnp.zeros((1, 4, 4, 6)), K, strides=2, padding="SAME", output_padding=1
            ),
            ValueError,
            "must be 0 with 'SAME'",
        ),
        (
            lambda: ops.conv_transpose(jnp.zeros((1, 1, 1, 6)), K, padding=3),
            ValueError,
            "is larger than the transposed convolution's output",
        ),
        (
            lambda: ops.conv_transpose(jnp.zeros((1, 4, 4, 6)), K, groups=4),
            ValueError,
            "`groups` \\(=4\\) must divide the input channels \\(=6\\)",
        ),
        (lambda: ops.depthwise_conv(X, K), ValueError, "depthwise `kernel` must have shape"),
        (
            lambda: ops.separable_conv(X, jnp.zeros((3, 3, 1, 8)), jnp.zeros((4, 2))),
            ValueError,
            "`pointwise_kernel` must have shape \\(8, C_out\\)",
        ),
        (
            lambda: ops.locally_connected(X, jnp.zeros((5, 5, 3, 3, 4, 2))),
            ValueError,
            "output grid \\(5, 5\\), but the input",
        ),
        (
            lambda: ops.locally_connected(X, jnp.zeros((6, 6, 3, 3, 3, 2))),
            ValueError,
            "expects 3 input channels",
        ),
        (
            lambda: ops.locally_connected(X, jnp.zeros((6, 3, 3, 4, 2))),
            ValueError,
            "`kernel` must have rank 6",
        ),
        (
            lambda: ops.tiled_conv(X, jnp.zeros((2, 2, 3, 3, 5, 2))),
            ValueError,
            "expect 5 input channels",
        ),
        (
            lambda: ops.tiled_conv(X, jnp.zeros((7, 2, 3, 3, 4, 2))),
            ValueError,
            "each tile must be between 1 and the output size",
        ),
        (
            lambda: ops.tiled_conv(X, jnp.zeros((0, 2, 3, 3, 4, 2))),
            ValueError,
            "each tile must be between 1",
        ),
        (
            lambda: ops.tiled_conv(X, jnp.zeros((2, 2, 3, 3, 4, 2)), bias=jnp.zeros(3)),
            ValueError,
            "`bias` must have shape",
        ),
        (
            lambda: ops.locally_connected(X, jnp.zeros((6, 6, 0, 3, 4, 2))),
            ValueError,
            "`kernel` \\(shape \\(6, 6, 0, 3, 4, 2\\)\\) has an empty window \\(0, 3\\)",
        ),
        (
            lambda: ops.tiled_conv(X, jnp.zeros((2, 2, 3, 0, 4, 2))),
            ValueError,
            "`kernels` \\(shape \\(2, 2, 3, 0, 4, 2\\)\\) has an empty window",
        ),
    ],
)
def test_bad_input_raises_clear_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("fast_paths", [True, False])
@pytest.mark.parametrize("c_in", [2, 8])
def test_empty_window_and_bad_precision_are_caught_on_every_path(fast_paths, c_in):
    """The fast paths (broadcast products for <= 3 channels, depthwise) never call lax's
    convolution, so these two checks must not be left to it."""
    x = jnp.ones((1, 7, c_in))
    with ops.use_fast_paths(fast_paths):
        for call in (
            lambda: ops.conv(x, jnp.ones((0, c_in, 4)), padding="VALID"),
            lambda: ops.conv_transpose(jnp.ones((1, 7, 4)), jnp.ones((0, c_in, 4))),
        ):
            with pytest.raises(ValueError, match=r"has an empty window \(0,\)"):
                call()
        for call in (
            lambda: ops.conv(x, jnp.ones((3, c_in, 4)), precision="bogus"),
            lambda: ops.conv(x, jnp.ones((3, 1, c_in)), groups=c_in, precision="bogus"),
            lambda: ops.conv(x, jnp.ones((3, c_in, 4)), precision=["highest", "bogus"]),
            lambda: ops.conv_transpose(
                jnp.ones((1, 4, 4)), jnp.ones((2, c_in, 4)), strides=2, precision="bogus"
            ),
        ):
            with pytest.raises(ValueError, match=r"`precision` \(=.*'bogus'.*\) is not accepted"):
                call()
        # Accepted forms still pass.
        for precision in ("highest", lax.Precision.HIGH, ("high", "highest"), None):
            y = ops.conv(x, jnp.ones((3, c_in, 4)), padding="VALID", precision=precision)
            assert y.shape == (1, 5, 4)
