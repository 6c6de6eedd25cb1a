"""cnn_jax.ops.pool against numpy loop references, PyTorch CPU and its own gradients.

The references below are written from the definitions, as loops over output
positions and window taps in float64; they share no code with the library (not even
the padding resolver or the output-size arithmetic).
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from cnn_jax import ops
from cnn_jax.ops import pool
from tests.conftest import torch_or_skip

# --------------------------------------------------------------------------- references


def _tup(v, n):
    return (int(v),) * n if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)


def ref_pads(padding, spatial, window, strides, dilation):
    """``(lo, hi)`` per dimension, from the formulas of cnn_jax.ops.padding's docstring."""
    n = len(window)
    eff = [d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True)]
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return [(0, 0)] * n
        if mode == "FULL":
            return [(e - 1, e - 1) for e in eff]
        if mode == "CAUSAL":
            return [(e - 1, 0) for e in eff]
        out = []
        for i, e, s in zip(spatial, eff, strides, strict=True):  # SAME
            total = max((math.ceil(i / s) - 1) * s + e - i, 0)
            out.append((total // 2, total - total // 2))
        return out
    if isinstance(padding, int):
        return [(padding, padding)] * n
    if all(isinstance(p, int) for p in padding):
        return [(p, p) for p in padding]
    return [tuple(p) for p in padding]


def ref_out_size(i, lo, hi, eff, s, ceil_mode):
    """PyTorch's pooling output size (aten/src/ATen/native/Pool.h)."""
    span = i + lo + hi - eff
    if not ceil_mode:
        return span // s + 1
    o = -(-span // s) + 1
    if (o - 1) * s >= i + lo:
        o -= 1
    return o


def ref_windows(spatial, window, strides=None, padding="VALID", dilation=1, ceil_mode=False):
    """Returns the output shape and ``(out_position, cells, nominal)`` for every window.

    ``cells`` are the input positions the window covers, in window order; ``nominal``
    the number of its taps inside the explicitly padded input (the ceil-mode overhang
    excluded).
    """
    n = len(spatial)
    w = _tup(window, n)
    s = w if strides is None else _tup(strides, n)
    d = _tup(dilation, n)
    pads = ref_pads(padding, spatial, w, s, d)
    outs = [
        ref_out_size(i, lo, hi, dd * (k - 1) + 1, ss, ceil_mode)
        for i, (lo, hi), k, ss, dd in zip(spatial, pads, w, s, d, strict=True)
    ]
    windows = []
    for o in itertools.product(*map(range, outs)):
        cells, nominal = [], 0
        for j in itertools.product(*map(range, w)):
            pos = [o[t] * s[t] + j[t] * d[t] - pads[t][0] for t in range(n)]
            if all(-pads[t][0] <= pos[t] < spatial[t] + pads[t][1] for t in range(n)):
                nominal += 1
            if all(0 <= pos[t] < spatial[t] for t in range(n)):
                cells.append(tuple(pos))
        windows.append((o, cells, nominal))
    return tuple(outs), windows


def ref_pool(
    x,
    window,
    strides=None,
    padding="VALID",
    dilation=1,
    ceil_mode=False,
    *,
    kind="max",
    count_include_pad=True,
    p=2.0,
):
    """Every windowed pool, by loops. Returns ``(values, indices)`` (indices for max)."""
    x = np.asarray(x, np.float64)
    spatial = x.shape[1:-1]
    out_shape, windows = ref_windows(spatial, window, strides, padding, dilation, ceil_mode)
    out = np.zeros((x.shape[0], *out_shape, x.shape[-1]))
    idx = np.zeros(out.shape, np.int64)
    for o, cells, nominal in windows:
        vals = np.stack([x[(slice(None), *c, slice(None))] for c in cells])  # (K, N, C)
        at = (slice(None), *o, slice(None))
        if kind == "max":
            first = np.argmax(vals, axis=0)  # the first maximum in window order
            out[at] = vals.max(axis=0)
            idx[at] = np.array([np.ravel_multi_index(c, spatial) for c in cells])[first]
        elif kind == "avg":
            out[at] = vals.sum(axis=0) / (nominal if count_include_pad else len(cells))
        elif kind == "lp":
            out[at] = (vals**p).sum(axis=0) ** (1.0 / p)
        elif kind == "stochastic_eval":
            a = np.maximum(vals, 0.0)
            s1 = a.sum(axis=0)
            out[at] = np.where(s1 > 0, (a * a).sum(axis=0) / np.where(s1 > 0, s1, 1), 0.0)
        else:
            raise ValueError(kind)
    return out, idx


def ref_max_grad(x, upstream, window, strides=None, padding="VALID", dilation=1, ceil_mode=False):
    """The gradient of ``sum(upstream * max_pool(x))``: upstream routed to the arg-max."""
    _, idx = ref_pool(x, window, strides, padding, dilation, ceil_mode)
    n, c = x.shape[0], x.shape[-1]
    grad = np.zeros((n, math.prod(x.shape[1:-1]), c))
    flat_idx = idx.reshape(n, -1, c)
    flat_up = np.asarray(upstream, np.float64).reshape(n, -1, c)
    for b, k, ch in itertools.product(range(n), range(flat_idx.shape[1]), range(c)):
        grad[b, flat_idx[b, k, ch], ch] += flat_up[b, k, ch]
    return grad.reshape(x.shape)


def ref_adaptive(x, output_size, kind):
    x = np.asarray(x, np.float64)
    spatial = x.shape[1:-1]
    out_shape = _tup(output_size, len(spatial))
    out = np.zeros((x.shape[0], *out_shape, x.shape[-1]))
    for o in itertools.product(*map(range, out_shape)):
        sl = tuple(
            slice(math.floor(oo * i / m), math.ceil((oo + 1) * i / m))
            for oo, i, m in zip(o, spatial, out_shape, strict=True)
        )
        cell = x[(slice(None), *sl, slice(None))].reshape(x.shape[0], -1, x.shape[-1])
        out[(slice(None), *o, slice(None))] = cell.mean(1) if kind == "avg" else cell.max(1)
    return out


def ref_unpool(values, indices, output_shape):
    n, c = values.shape[0], values.shape[-1]
    out = np.zeros((n, math.prod(output_shape), c))
    v = np.asarray(values, np.float64).reshape(n, -1, c)
    ix = np.asarray(indices).reshape(n, -1, c)
    for b, k, ch in itertools.product(range(n), range(v.shape[1]), range(c)):
        out[b, ix[b, k, ch], ch] = v[b, k, ch]
    return out.reshape(n, *output_shape, c)


def ref_maxout(x, k, axis):
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    out = np.stack([x[..., j * k : (j + 1) * k].max(-1) for j in range(x.shape[-1] // k)], axis=-1)
    return np.moveaxis(out, -1, axis)


def check_grads_jit(f, args, order, **kw):
    """``check_grads`` of the jitted ``f`` (many evaluations: compiled once)."""
    check_grads(jax.jit(f), args, order, **kw)


# --------------------------------------------------------------------------- inputs


def normal(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def distinct(rng, shape, spacing=0.1, offset=0.0):
    """Values spaced ``spacing`` apart (no ties, none within a finite-difference step)."""
    return (rng.permutation(math.prod(shape)).reshape(shape) * spacing + offset).astype(np.float32)


def tie_heavy(rng, shape):
    return rng.integers(-2, 3, shape).astype(np.float32)


# (shape, window, strides, padding, dilation, ceil_mode): 1-, 2- and 3-D
GRID = [
    ((2, 9, 3), 3, 2, 1, 1, False),
    ((2, 10, 3), 3, 2, 1, 1, True),
    ((1, 11, 2), 2, None, "VALID", 1, True),
    ((2, 12, 2), 3, 1, "SAME", 2, False),
    ((1, 8, 2), 3, 3, "FULL", 1, True),
    ((1, 9, 2), 4, 2, "CAUSAL", 1, False),
    ((1, 10, 1), 2, 3, [(0, 1)], 3, True),
    ((2, 7, 8, 3), 2, None, "VALID", 1, False),
    ((2, 7, 8, 3), 3, 2, 1, 1, True),
    ((1, 9, 7, 2), (3, 2), (2, 1), ((1, 0), (0, 1)), (1, 2), False),
    ((1, 8, 9, 2), (2, 3), (3, 2), "same", 1, True),
    ((2, 6, 6, 2), 3, 2, (1, 0), 2, True),
    ((1, 10, 5, 1), (4, 2), (3, 2), "FULL", 1, False),
    ((1, 5, 7, 2), 3, 2, "CAUSAL", (2, 1), True),
    ((1, 5, 6, 4, 2), 2, None, "VALID", 1, True),
    ((1, 6, 5, 5, 2), 3, 2, 1, 1, False),
    ((2, 5, 5, 6, 1), (2, 3, 2), (1, 2, 2), ((0, 1), (1, 1), (1, 0)), (2, 1, 1), True),
    ((1, 4, 6, 5, 2), 3, (2, 3, 1), "SAME", (1, 1, 2), False),
]
GRID_IDS = [f"{len(c[0]) - 2}d-{i}" for i, c in enumerate(GRID)]


def _args(case):
    shape, window, strides, padding, dilation, ceil_mode = case
    return shape, (window, strides, padding), dict(dilation=dilation, ceil_mode=ceil_mode)


def _ref_kw(kw):
    return dict(dilation=kw["dilation"], ceil_mode=kw["ceil_mode"])


# --------------------------------------------------------------------------- numpy references


@pytest.mark.parametrize("case", GRID, ids=GRID_IDS)
def test_max_pool_and_indices_match_reference(case, rng):
    shape, args, kw = _args(case)
    x = tie_heavy(rng, shape)  # many ties: indices must be the first maximum
    want, want_idx = ref_pool(x, *args, **_ref_kw(kw))
    got = pool.max_pool(x, *args, **kw)
    values, indices = pool.max_pool_with_indices(x, *args, **kw)
    assert got.dtype == jnp.float32 and indices.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(values), want)
    np.testing.assert_array_equal(np.asarray(indices), want_idx)
    expected_shape = ops.pool_output_size(
        shape[1:-1],
        _tup(args[0], len(shape) - 2),
        None if args[1] is None else _tup(args[1], len(shape) - 2),
        args[2],
        _tup(kw["dilation"], len(shape) - 2),
        kw["ceil_mode"],
    )
    assert got.shape == (shape[0], *expected_shape, shape[-1])


@pytest.mark.parametrize("case", GRID, ids=GRID_IDS)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_matches_reference(case, count_include_pad, rng):
    shape, args, kw = _args(case)
    x = normal(rng, shape)
    want, _ = ref_pool(x, *args, **_ref_kw(kw), kind="avg", count_include_pad=count_include_pad)
    got = pool.avg_pool(x, *args, **kw, count_include_pad=count_include_pad)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case, p", [(c, (2.0, 1.5, 3)[i % 3]) for i, c in enumerate(GRID)], ids=GRID_IDS
)
def test_lp_pool_matches_reference(case, p, rng):
    shape, args, kw = _args(case)
    x = np.abs(normal(rng, shape)) + 0.1
    want, _ = ref_pool(x, *args, **_ref_kw(kw), kind="lp", p=p)
    got = pool.lp_pool(x, *args, **kw, p=p)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("case", GRID[1::2], ids=GRID_IDS[1::2])
def test_stochastic_pool_eval_matches_reference(case, rng):
    shape, args, kw = _args(case)
    x = normal(rng, shape)  # about half negative: clipped to 0
    x.reshape(-1)[:5] = 0.0
    want, _ = ref_pool(x, *args, **_ref_kw(kw), kind="stochastic_eval")
    got = pool.stochastic_pool(x, *args, **kw, train=False)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_lp_pool_signs_and_zero_windows():
    x = np.array([[-1.0, -2.0, 3.0, 0.0, 0.0, 2.0]], np.float32)[..., None]
    np.testing.assert_allclose(np.asarray(pool.lp_pool(x, 2, p=1))[0, :, 0], [-3.0, 3.0, 2.0])
    np.testing.assert_allclose(
        np.asarray(pool.lp_pool(x, 2, p=2))[0, :, 0], [math.sqrt(5), 3.0, 2.0], rtol=1e-6
    )
    odd = np.asarray(pool.lp_pool(x, 2, p=3))[0, :, 0]  # (-9) ** (1/3): NaN, as torch
    assert np.isnan(odd[0]) and np.allclose(odd[1:], [3.0, 2.0])
    assert np.isnan(np.asarray(pool.lp_pool(x, 2, p=1.5))[0, 0, 0])  # (-1) ** 1.5
    zeros = np.zeros((1, 4, 1), np.float32)
    out, grad = jax.value_and_grad(lambda z: pool.lp_pool(z, 2, p=2).sum())(zeros)
    assert float(out) == 0.0 and np.all(np.asarray(grad) == 0.0)  # no NaN at the kink


@pytest.mark.parametrize(
    "shape, output_size",
    [
        ((2, 10, 3), 4),
        ((1, 7, 2), 7),
        ((1, 5, 2), 8),
        ((2, 7, 9, 3), (3, 4)),
        ((1, 6, 8, 2), (3, 4)),
        ((1, 5, 7, 2), (7, None)),
        ((1, 9, 4, 1), (1, 1)),
        ((1, 5, 6, 7, 2), (2, 4, 3)),
        ((1, 4, 4, 3, 1), (None, 3, 5)),
    ],
)
def test_adaptive_pools_match_reference(shape, output_size, rng):
    x = normal(rng, shape)
    n = len(shape) - 2
    full = tuple(
        i if o is None else o
        for i, o in zip(
            shape[1:-1],
            output_size if isinstance(output_size, tuple) else (output_size,) * n,
            strict=True,
        )
    )
    avg = pool.adaptive_avg_pool(x, output_size)
    mx = pool.adaptive_max_pool(x, output_size)
    assert avg.shape == mx.shape == (shape[0], *full, shape[-1])
    np.testing.assert_allclose(np.asarray(avg), ref_adaptive(x, full, "avg"), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mx), ref_adaptive(x, full, "max"))


def test_adaptive_bins_are_pytorchs_rule():
    starts, ends = pool.adaptive_bins(10, 4)
    np.testing.assert_array_equal(starts, [0, 2, 5, 7])
    np.testing.assert_array_equal(ends, [3, 5, 8, 10])
    starts, ends = pool.adaptive_bins(3, 5)  # more bins than cells: they repeat
    np.testing.assert_array_equal(starts, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(ends, [1, 2, 2, 3, 3])


@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 4, 5, 3), (1, 3, 4, 2, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pools(shape, keepdims, rng):
    x = normal(rng, shape)
    axes = tuple(range(1, len(shape) - 1))
    avg = pool.global_avg_pool(x, keepdims=keepdims)
    mx = pool.global_max_pool(x, keepdims=keepdims)
    np.testing.assert_allclose(
        np.asarray(avg), x.astype(np.float64).mean(axes, keepdims=keepdims), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(mx), x.max(axes, keepdims=keepdims))
    want_shape = (shape[0], *([1] * len(axes) if keepdims else []), shape[-1])
    assert avg.shape == mx.shape == want_shape
    np.testing.assert_allclose(  # the adaptive pools to size 1 are the global pools
        np.asarray(pool.adaptive_avg_pool(x, 1)).reshape(shape[0], -1),
        np.asarray(avg).reshape(shape[0], -1),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "shape, k, axis", [((2, 12), 3, -1), ((2, 6, 5, 4), 2, -1), ((2, 6, 5, 4), 3, 1), ((8,), 4, 0)]
)
def test_maxout_matches_reference(shape, k, axis, rng):
    x = normal(rng, shape)
    got = pool.maxout(x, k, axis=axis)
    np.testing.assert_array_equal(np.asarray(got), ref_maxout(x, k, axis))
    assert got.shape[axis] == shape[axis] // k


def test_maxout_groups_consecutive_channels():
    x = np.array([[1.0, 5.0, 2.0, 0.0, 7.0, 3.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(pool.maxout(x, 2)), [[5.0, 2.0, 7.0]])
    np.testing.assert_array_equal(np.asarray(pool.maxout(x, 3)), [[5.0, 7.0]])
    np.testing.assert_array_equal(np.asarray(pool.maxout(x, 1)), x)


@pytest.mark.parametrize(
    "shape, window, strides, padding",
    [
        ((2, 9, 3), 3, 2, 1),
        ((2, 6, 7, 3), 2, None, "VALID"),
        ((1, 7, 8, 2), 3, 1, 1),
        ((1, 4, 6, 5, 2), (2, 3, 2), (2, 3, 1), ((0, 1), (1, 1), (0, 0))),
    ],
)
def test_max_unpool_matches_reference(shape, window, strides, padding, rng):
    x = normal(rng, shape)
    values, indices = pool.max_pool_with_indices(x, window, strides, padding)
    got = pool.max_unpool(values, indices, shape[1:-1])
    want = ref_unpool(np.asarray(values), np.asarray(indices), shape[1:-1])
    np.testing.assert_array_equal(np.asarray(got), want)
    assert got.shape == shape and got.dtype == values.dtype
    # every non-zero cell is a maximum of x, kept in place
    nz = np.asarray(got) != 0
    np.testing.assert_array_equal(np.asarray(got)[nz], x[nz])


def test_max_unpool_int_output_shape_and_explicit_indices():
    values = np.array([[[1.0], [2.0]]], np.float32)  # (1, 2, 1)
    indices = np.array([[[3], [0]]], np.int32)
    got = pool.max_unpool(values, indices, 5)
    np.testing.assert_array_equal(np.asarray(got)[0, :, 0], [2.0, 0.0, 0.0, 1.0, 0.0])


def test_max_unpool_drops_out_of_range_indices_under_jit():
    values = np.array([[[1.0], [2.0], [3.0]]], np.float32)
    indices = np.array([[[1], [-1], [7]]], np.int32)
    got = jax.jit(lambda v, i: pool.max_unpool(v, i, (4,)))(values, indices)
    np.testing.assert_array_equal(np.asarray(got)[0, :, 0], [0.0, 1.0, 0.0, 0.0])


# --------------------------------------------------------------------------- semantics


def test_padding_never_wins_a_max_and_ceil_overhang_is_not_counted():
    x = -np.arange(1.0, 6.0, dtype=np.float32).reshape(1, 5, 1) - 10.0  # all negative
    got = np.asarray(pool.max_pool(x, 2, 2, 1, ceil_mode=True))[0, :, 0]
    np.testing.assert_array_equal(got, [-11.0, -12.0, -14.0])  # not the zero-padding
    # the ceil rule drops a 4th window, which would start in the padding
    ones = np.ones((1, 5, 1), np.float32)
    np.testing.assert_allclose(np.asarray(pool.avg_pool(ones, 2, 2, 1))[0, :, 0], [0.5, 1, 1])
    np.testing.assert_allclose(
        np.asarray(pool.avg_pool(ones, 3, 2, 0, ceil_mode=True))[0, :, 0], [1.0, 1.0]
    )
    # window 2, stride 2 on 5 cells with ceil: the last window is cell 4 + overhang
    np.testing.assert_allclose(
        np.asarray(pool.avg_pool(ones * 4, 2, 2, 0, ceil_mode=True))[0, :, 0], [4.0, 4.0, 4.0]
    )


def test_integer_and_low_precision_dtypes(rng):
    xi = rng.integers(-5, 5, (2, 6, 6, 2)).astype(np.int32)
    got = pool.max_pool(xi, 2, padding=1, ceil_mode=True)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(
        np.asarray(got), ref_pool(xi, 2, padding=1, ceil_mode=True)[0].astype(np.int32)
    )
    _, idx = pool.max_pool_with_indices(xi, 3, 2, 1)
    np.testing.assert_array_equal(np.asarray(idx), ref_pool(xi, 3, 2, 1)[1])
    avg = pool.avg_pool(xi, 2)
    assert avg.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(avg), ref_pool(xi, 2, kind="avg")[0], rtol=1e-6)
    xb = jnp.asarray(normal(rng, (2, 8, 8, 2)), jnp.bfloat16)
    for out in (
        pool.avg_pool(xb, 2),
        pool.max_pool(xb, 2),
        pool.lp_pool(xb, 2),
        pool.global_avg_pool(xb),
        pool.adaptive_avg_pool(xb, 3),
    ):
        assert out.dtype == jnp.bfloat16


def test_matches_flax_pools_with_same_padding(rng):
    import flax.linen as nn

    x = normal(rng, (2, 9, 7, 3))
    np.testing.assert_array_equal(
        np.asarray(pool.max_pool(x, (3, 2), (2, 2), "SAME")),
        np.asarray(nn.max_pool(x, (3, 2), (2, 2), "SAME")),
    )
    np.testing.assert_allclose(
        np.asarray(pool.avg_pool(x, (3, 3), (2, 1), "SAME")),
        np.asarray(nn.avg_pool(x, (3, 3), (2, 1), "SAME")),
        rtol=1e-6,
        atol=1e-6,
    )


def test_nan_wins_the_max_and_its_index_is_the_last_nan():
    x = np.array([1.0, np.nan, 3.0, np.nan, 0.0, 2.0], np.float32).reshape(1, 6, 1)
    values, indices = pool.max_pool_with_indices(x, 4, 2)
    assert np.isnan(np.asarray(values)).all()
    np.testing.assert_array_equal(np.asarray(indices)[0, :, 0], [3, 3])
    assert np.isnan(np.asarray(pool.max_pool(x, 4, 2))).all()


def test_ops_under_jit_match_eager(rng):
    x = normal(rng, (2, 7, 6, 3))
    key = jax.random.key(3)
    fns = {
        "max": lambda v: pool.max_pool(v, 3, 2, 1, ceil_mode=True, dilation=(1, 2)),
        "idx": lambda v: pool.max_pool_with_indices(v, 3, 2, "SAME"),
        "avg": lambda v: pool.avg_pool(v, 3, 2, 1, ceil_mode=True, count_include_pad=False),
        "lp": lambda v: pool.lp_pool(jnp.abs(v), 2, p=2.0),
        "adaptive": lambda v: pool.adaptive_max_pool(v, (4, 4)),
        "sto": lambda v: pool.stochastic_pool(v, 2, 1, rng=key, train=True),
        "maxout": lambda v: pool.maxout(v, 3),
    }
    for name, fn in fns.items():
        eager, jitted = fn(x), jax.jit(fn)(x)
        for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, err_msg=name)


def test_exported_from_ops():
    for name in pool.__all__:
        assert getattr(ops, name) is getattr(pool, name)
        assert name in ops.__all__


# --------------------------------------------------------------------------- gradients

GRAD_CASES = [
    ((2, 7, 2), 3, 2, 1, 1, True),
    ((1, 6, 7, 2), 3, 2, "SAME", 1, False),
    ((1, 7, 6, 2), (2, 3), 1, ((1, 0), (0, 1)), (2, 1), True),
    ((1, 4, 5, 4, 1), 2, None, "VALID", 1, True),
]
GRAD_IDS = [f"{len(c[0]) - 2}d-{i}" for i, c in enumerate(GRAD_CASES)]


@pytest.mark.parametrize("case", GRAD_CASES, ids=GRAD_IDS)
def test_max_pool_gradient_routes_to_the_argmax_only(case, rng):
    shape, args, kw = _args(case)
    x = distinct(rng, shape)
    up = normal(rng, pool.max_pool(x, *args, **kw).shape)
    want = ref_max_grad(x, up, *args, **_ref_kw(kw))
    grad = jax.jit(jax.grad(lambda v: jnp.sum(pool.max_pool(v, *args, **kw) * up)))(x)
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-6, atol=1e-6)
    grad_i = jax.jit(
        jax.grad(lambda v: jnp.sum(pool.max_pool_with_indices(v, *args, **kw)[0] * up))
    )(x)
    np.testing.assert_allclose(np.asarray(grad_i), want, rtol=1e-6, atol=1e-6)
    # forward mode (max_pool is a custom JVP): the tangent gathered at the arg-max
    tangent = normal(rng, shape)
    _, jvp = jax.jvp(lambda v: pool.max_pool(v, *args, **kw), (x,), (tangent,))
    np.testing.assert_allclose(
        np.sum(np.asarray(jvp) * up), np.sum(want * tangent), rtol=1e-5, atol=1e-5
    )


def test_max_pool_gradient_with_ties_goes_to_the_first_maximum():
    x = np.array([[1.0, 3.0, 3.0, 0.0, 2.0, 2.0]], np.float32)[..., None]
    grad = jax.grad(lambda v: pool.max_pool(v, 3, 1).sum())(x)
    # windows [1,3,3], [3,3,0], [3,0,2], [0,2,2]: first maxima at 1, 1, 2, 4
    np.testing.assert_array_equal(np.asarray(grad)[0, :, 0], [0, 2, 1, 0, 1, 0])
    for dilation in (1, 2):
        g = jax.grad(lambda v, d=dilation: pool.max_pool(v, 2, 1, dilation=d).sum())(x)
        ref = ref_max_grad(x, np.ones((1, 6 - dilation, 1)), 2, 1, dilation=dilation)
        np.testing.assert_array_equal(np.asarray(g), ref)


@pytest.mark.parametrize("case", GRAD_CASES, ids=GRAD_IDS)
def test_smooth_pool_gradients(case, rng):
    shape, args, kw = _args(case)
    x = np.abs(normal(rng, shape)) + 0.5
    i = GRAD_CASES.index(case)
    rev = dict(order=1, modes=("rev",), eps=1e-2)
    if i % 2 == 0:
        check_grads_jit(
            lambda v: pool.avg_pool(v, *args, **kw, count_include_pad=i == 0), (x,), **rev
        )
    else:
        p = 1.5 if i == 1 else 2.0
        check_grads_jit(lambda v: pool.lp_pool(v, *args, **kw, p=p), (x,), **rev, rtol=2e-2)
    if i == 1:
        check_grads_jit(lambda v: pool.stochastic_pool(v, *args, **kw, train=False), (x,), **rev)


def test_second_order_gradients(rng):
    x = distinct(rng, (1, 6, 5, 2), offset=0.5)
    kw = dict(ceil_mode=True, dilation=(1, 2))
    # max_pool's custom JVP, both modes, to second order; the others in reverse mode
    check_grads_jit(lambda v: pool.max_pool(v, 2, 2, 1, **kw), (x,), order=2, eps=1e-2)
    for fn in (
        lambda v: pool.avg_pool(v, 2, 2, 1, **kw, count_include_pad=False),
        lambda v: pool.lp_pool(v, 2, 2, 1, **kw, p=3.0),
    ):
        check_grads_jit(fn, (x,), order=2, modes=("rev",), eps=1e-2, rtol=2e-2)


def test_adaptive_and_maxout_gradients(rng):
    x = distinct(rng, (1, 7, 5, 4), offset=0.3)
    for fn in (
        lambda v: pool.adaptive_avg_pool(v, (3, 4)),
        lambda v: pool.adaptive_max_pool(v, (3, 4)),
        lambda v: pool.adaptive_max_pool(v, (7, 10)),
        lambda v: pool.maxout(v, 2),
    ):
        check_grads_jit(fn, (x,), order=1, eps=1e-2)


def test_max_family_with_an_empty_batch_or_no_channels():
    """As PyTorch: empty results, empty gradients (the reshapes must not infer -1)."""
    for shape in ((0, 4, 4, 3), (2, 4, 4, 0)):
        x = jnp.zeros(shape)
        values, indices = pool.max_pool_with_indices(x, 2)
        assert values.shape == indices.shape == (shape[0], 2, 2, shape[3])
        assert jax.grad(lambda v: pool.max_pool(v, 2).sum())(x).shape == shape
        assert pool.max_unpool(values, indices, (4, 4)).shape == shape
        assert pool.global_max_pool(x).shape == (shape[0], shape[3])


def test_max_gradients_go_to_the_first_maximum_as_pytorch():
    """Ties (and bins padded with -inf) route the whole gradient to the first maximum
    in row-major order, as torch's adaptive_max_pool and max_pool (jnp.max splits it)."""
    grad = lambda f, x: np.asarray(jax.grad(lambda v: f(v[None, ..., None]).sum())(x))  # noqa: E731
    ones = jnp.ones(4)
    for f in (lambda v: pool.adaptive_max_pool(v, 1), pool.global_max_pool):
        np.testing.assert_array_equal(grad(f, ones), [1, 0, 0, 0])
    for x in (jnp.full(5, 2.0), jnp.full(5, -jnp.inf)):  # 5 -> 3 bins: [0,2) [1,4) [3,5)
        np.testing.assert_array_equal(
            grad(lambda v: pool.adaptive_max_pool(v, 3), x), [1, 1, 0, 1, 0]
        )
    x = jnp.asarray([1.0, jnp.nan, 3.0, jnp.nan, 2.0])  # PyTorch: the last NaN
    for f in (lambda v: pool.adaptive_max_pool(v, 1), pool.global_max_pool):
        np.testing.assert_array_equal(grad(f, x), [0, 0, 0, 1, 0])
    x = jnp.asarray([[1.0, 3.0], [3.0, 2.0]])  # row-major first: (0, 1), not (1, 0)
    for f in (lambda v: pool.adaptive_max_pool(v, 1), pool.global_max_pool):
        np.testing.assert_array_equal(grad(f, x), [[0, 1], [0, 0]])


@pytest.mark.parametrize(
    "shape, output_size", [((5, 7), (3, 4)), ((6, 6), (4, 4)), ((7, 5), (2, 3))]
)
def test_adaptive_max_gradients_with_ties_match_torch(shape, output_size, rng):
    torch = torch_or_skip()
    x = rng.integers(0, 3, shape).astype(np.float32)  # many ties, overlapping bins
    t = torch.tensor(x)[None, None].requires_grad_()
    torch.nn.functional.adaptive_max_pool2d(t, output_size).sum().backward()
    g = jax.grad(lambda v: pool.adaptive_max_pool(v[None, ..., None], output_size).sum())(
        jnp.asarray(x)
    )
    np.testing.assert_array_equal(np.asarray(g), t.grad[0, 0].numpy())


def test_max_unpool_gradients(rng):
    x = distinct(rng, (2, 6, 7, 3))
    values, indices = pool.max_pool_with_indices(x, 2)  # disjoint windows: unique indices
    check_grads_jit(lambda v: pool.max_unpool(v, indices, (6, 7)), (values,), order=1, eps=1e-2)
    up = normal(rng, x.shape)
    g = jax.grad(lambda v: jnp.sum(pool.max_unpool(v, indices, (6, 7)) * up))(values)
    want = np.take_along_axis(up.reshape(2, -1, 3), np.asarray(indices).reshape(2, -1, 3), 1)
    np.testing.assert_array_equal(np.asarray(g), want.reshape(values.shape))


def test_unpool_of_overlapping_windows_has_the_true_gradient(rng):
    # stride 1: one cell is the maximum of several windows (duplicate indices); the
    # composite keeps x at the selected cells, so its gradient is `up` there, once
    x = distinct(rng, (1, 6, 6, 2))
    up = normal(rng, x.shape)

    def f(v):
        vals, idx = pool.max_pool_with_indices(v, 3, 1, 1)
        return jnp.sum(pool.max_unpool(vals, idx, (6, 6)) * up)

    _, idx = pool.max_pool_with_indices(x, 3, 1, 1)
    idx = np.asarray(idx)
    assert len(np.unique(idx[0, :, :, 0])) < idx[0, :, :, 0].size  # duplicates exist
    selected = np.zeros((1, 36, 2), bool)
    for c in range(2):
        selected[0, np.unique(idx[0, ..., c]), c] = True
    want = np.where(selected.reshape(x.shape), up, 0.0)
    np.testing.assert_allclose(np.asarray(jax.grad(f)(x)), want, rtol=1e-6)


# --------------------------------------------------------------------------- stochastic pooling


def test_stochastic_pool_draw_frequencies():
    from scipy import stats

    # windows [1, 2, 3], [2, 3, 4], [3, 4, 5] (overlapping), [0, 0, 4] and [0, 0, 0]
    row = np.array([1, 2, 3, 4, 5, 0, 0, 0, 4, 0, 0, 0], np.float32)
    x = np.broadcast_to(row[None, :, None], (500, 12, 8)).copy()  # 4000 draws per window
    out = np.asarray(pool.stochastic_pool(x, 3, 1, "VALID", rng=jax.random.key(0), train=True))
    for start in (0, 1, 2):
        window = row[start : start + 3]
        drawn = out[:, start, :].ravel()
        counts = np.array([(drawn == v).sum() for v in window])
        assert counts.sum() == drawn.size
        expected = drawn.size * window.astype(np.float64) / window.sum(dtype=np.float64)
        assert stats.chisquare(counts, expected).pvalue > 1e-3, (start, counts, expected)
    assert np.all(out[:, 6, :] == 4.0)  # [0, 0, 4]: zeros are never drawn
    assert np.all(out[:, 9, :] == 0.0)  # all-zero window
    # different windows, samples and channels draw independently (not one shared draw)
    assert len(np.unique(out[:, 0, :])) == 3


def test_stochastic_pool_draws_input_values_and_gradient_goes_to_them(rng):
    x = distinct(rng, (2, 7, 8, 2), offset=-1.0)  # negative cells are never drawn
    key = jax.random.key(1)
    kw = dict(rng=key, train=True, ceil_mode=True)
    out, vjp = jax.vjp(lambda v: pool.stochastic_pool(v, 2, 2, 1, **kw), x)
    (grad,) = vjp(jnp.ones_like(out))
    out, grad = np.asarray(out), np.asarray(grad)
    for o, cells, _ in ref_windows((7, 8), 2, 2, 1, 1, True)[1]:
        for b, c in itertools.product(range(2), range(2)):
            vals = np.array([x[b, i, j, c] for i, j in cells])
            positive = vals[vals > 0]
            got = out[b, o[0], o[1], c]
            assert got in positive if positive.size else got == 0.0
    # same key, same draws; another key, other draws
    np.testing.assert_array_equal(np.asarray(pool.stochastic_pool(x, 2, 2, 1, **kw)), out)
    other = pool.stochastic_pool(x, 2, 2, 1, rng=jax.random.key(2), train=True, ceil_mode=True)
    assert not np.array_equal(np.asarray(other), out)
    # gradient: 1 at the drawn cell of every (disjoint) window
    assert set(np.unique(grad)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.sort(x[grad == 1.0]), np.sort(out[out > 0]))


def test_stochastic_pool_clips_negative_inputs(rng):
    x = normal(rng, (2, 6, 6, 3))
    relu = np.maximum(x, 0)
    for train in (True, False):
        kw = dict(rng=jax.random.key(5), train=train)
        np.testing.assert_array_equal(
            np.asarray(pool.stochastic_pool(x, 3, 2, 1, **kw)),
            np.asarray(pool.stochastic_pool(relu, 3, 2, 1, **kw)),
        )
    assert np.all(np.asarray(pool.stochastic_pool(-np.abs(x), 2, train=False)) == 0.0)


def test_stochastic_pool_eval_is_the_expectation_of_train():
    x = np.array([[1.0, 3.0, 0.0, 2.0]], np.float32)[..., None]
    np.testing.assert_allclose(
        np.asarray(pool.stochastic_pool(x, 2, train=False))[0, :, 0], [2.5, 2.0], rtol=1e-6
    )
    xs = np.broadcast_to(x, (4000, 4, 1))
    draws = np.asarray(pool.stochastic_pool(xs, 2, rng=jax.random.key(0), train=True))
    np.testing.assert_allclose(draws.mean(0)[:, 0], [2.5, 2.0], atol=0.05)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "fn",
    [
        pool.max_pool,
        pool.avg_pool,
        pool.lp_pool,
        pool.max_pool_with_indices,
        lambda x, *a, **k: pool.stochastic_pool(x, *a, **k, train=False),
    ],
    ids=["max", "avg", "lp", "indices", "stochastic"],
)
def test_window_argument_errors(fn):
    x = np.zeros((2, 5, 6, 3), np.float32)
    with pytest.raises(ValueError, match=r"`x` must have shape \(N, \*spatial, C\)"):
        fn(np.zeros((5, 3), np.float32), 2)
    with pytest.raises(TypeError, match="`x` must be an array"):
        fn([[[1.0]]], 1)
    with pytest.raises(ValueError, match=r"`window` \(=0\) must be positive"):
        fn(x, 0)
    with pytest.raises(ValueError, match=r"`window` \(=\(2, 2, 2\)\) must have one entry"):
        fn(x, (2, 2, 2))
    with pytest.raises(ValueError, match=r"`strides` \(=\(1, -1\)\) must be positive"):
        fn(x, 2, (1, -1))
    with pytest.raises(ValueError, match=r"`dilation` \(=0\) must be positive"):
        fn(x, 2, dilation=0)
    with pytest.raises(
        ValueError,
        match=r"`window` \(=\(6, 2\)\).*larger than the padded "
        r"input \(5 \+ 0 \+ 0 = 5\)",
    ):
        fn(x, (6, 2))
    with pytest.raises(ValueError, match=r"`window` \(=3\).*dilated to 7.*\(5 \+ 0 \+ 0 = 5\)"):
        fn(x, 3, dilation=3)
    with pytest.raises(ValueError, match=r"`padding` \(='SAMEE'\) must be one of"):
        fn(x, 2, padding="SAMEE")
    with pytest.raises(ValueError, match=r"`padding` .* must be non-negative"):
        fn(x, 2, padding=-1)
    with pytest.raises(ValueError, match=r"`padding`.*one \(lo, hi\) pair per"):
        fn(x, 2, padding=((1, 1),))
    with pytest.raises(TypeError, match="`padding`"):
        fn(x, 2, padding=1.5)
    with pytest.raises(TypeError, match="`ceil_mode` must be a bool"):
        fn(x, 2, ceil_mode="yes")
    with pytest.raises(TypeError, match="`window` must be an int"):
        fn(x, 2.0)


def test_errors_come_before_tracing_and_under_jit():
    x = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="`window`"):
        jax.jit(lambda v: pool.max_pool(v, 5))(x)
    with pytest.raises(ValueError, match="`p`"):
        jax.make_jaxpr(lambda v: pool.lp_pool(v, 2, p=0.0))(x)


def test_max_pool_rejects_windows_of_padding_only():
    x = np.zeros((1, 4, 1), np.float32)
    for fn in (pool.max_pool, pool.max_pool_with_indices):
        with pytest.raises(
            ValueError,
            match=r"`padding` \(=\[\(3, 0\)\]\).*window 0 .*only "
            "padding",
        ):
            fn(x, 2, 1, [(3, 0)])
        with pytest.raises(ValueError, match=r"`padding` \(='FULL'\).*only padding"):
            fn(np.zeros((1, 1, 1), np.float32), 2, 1, "FULL", dilation=3)
    # average pooling allows it (zeros; with count_include_pad=False the divisor is 0 -> 0)
    np.testing.assert_array_equal(
        np.asarray(pool.avg_pool(x + 1, 2, 1, [(3, 0)], count_include_pad=False))[0, :, 0],
        [0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
    )


def test_other_argument_errors():
    x = np.zeros((2, 6, 6, 4), np.float32)
    with pytest.raises(TypeError, match="`count_include_pad` must be a bool"):
        pool.avg_pool(x, 2, count_include_pad=None)
    for p in (0, -1.0):
        with pytest.raises(ValueError, match=rf"`p` \(={p}\) must be positive and finite"):
            pool.lp_pool(x, 2, p=p)
    with pytest.raises(ValueError, match=r"`p` \(=inf\)"):
        pool.lp_pool(x, 2, p=float("inf"))
    with pytest.raises(TypeError, match="`p` must be a real number"):
        pool.lp_pool(x, 2, p="2")
    with pytest.raises(ValueError, match=r"`rng` \(=None\) must be a jax.random key"):
        pool.stochastic_pool(x, 2, train=True)
    with pytest.raises(TypeError, match="`train` must be a bool"):
        pool.stochastic_pool(x, 2, train=None)
    with pytest.raises(TypeError, match="`keepdims` must be a bool"):
        pool.global_avg_pool(x, keepdims=1)
    with pytest.raises(ValueError, match="`x` must have shape"):
        pool.global_max_pool(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"`output_size` \(=0\) must be positive"):
        pool.adaptive_avg_pool(x, 0)
    with pytest.raises(ValueError, match=r"`output_size` \(=\(2, 2, 2\)\) must have one entry"):
        pool.adaptive_max_pool(x, (2, 2, 2))
    for fn in (
        lambda v: pool.adaptive_max_pool(v, 2),
        pool.global_max_pool,
        pool.global_avg_pool,
    ):
        with pytest.raises(ValueError, match=r"`x` \(shape \(1, 0, 3, 1\)\) has an empty spatial"):
            fn(np.zeros((1, 0, 3, 1), np.float32))
    with pytest.raises(TypeError, match=r"`rng` must be a jax\.random key, got 5"):
        pool.stochastic_pool(x, 2, rng=5, train=True)
    z = jnp.zeros((1, 4, 4, 2), jnp.complex64)
    for fn in (
        lambda v: pool.max_pool(v, 2),
        lambda v: pool.max_pool_with_indices(v, 2),
        lambda v: pool.adaptive_max_pool(v, 2),
        pool.global_max_pool,
    ):
        with pytest.raises(TypeError, match="complex dtype complex64; max pooling needs real"):
            fn(z)
    with pytest.raises(
        ValueError,
        match=r"`num_pieces` \(=3\) must divide the number of "
        r"channels \(=4\)",
    ):
        pool.maxout(x, 3)
    with pytest.raises(ValueError, match=r"`num_pieces` \(=0\) must be positive"):
        pool.maxout(x, 0)
    with pytest.raises(TypeError, match="`num_pieces` must be an int"):
        pool.maxout(x, 2.0)
    with pytest.raises(ValueError, match=r"`axis` \(=4\) is out of range"):
        pool.maxout(x, 2, axis=4)


def test_max_unpool_errors():
    values = np.ones((1, 2, 2, 1), np.float32)
    indices = np.zeros((1, 2, 2, 1), np.int32)
    with pytest.raises(ValueError, match=r"`indices` shape \(1, 2, 1, 1\) must equal `values`"):
        pool.max_unpool(values, indices[:, :, :1], (4, 4))
    with pytest.raises(ValueError, match="`indices` must have rank 4"):
        pool.max_unpool(values, indices[..., 0], (4, 4))
    with pytest.raises(TypeError, match="`indices` must have an integer dtype"):
        pool.max_unpool(values, indices.astype(np.float32), (4, 4))
    with pytest.raises(ValueError, match=r"`output_shape` \(=\(4, 4, 4\)\) must have one entry"):
        pool.max_unpool(values, indices, (4, 4, 4))
    with pytest.raises(
        ValueError,
        match=r"`indices` must lie in \[0, 16\).*got values in "
        r"\[0, 16\]",
    ):
        pool.max_unpool(values, indices + np.array([0, 16]).reshape(1, 2, 1, 1), (4, 4))
    with pytest.raises(ValueError, match=r"`indices` must lie in \[0, 16\).*\[-1, 0\]"):
        pool.max_unpool(values, indices - np.array([0, 1]).reshape(1, 2, 1, 1), (4, 4))
    with pytest.raises(ValueError, match="`values` must have shape"):
        pool.max_unpool(values[0, 0], indices[0, 0], (4,))


# --------------------------------------------------------------------------- PyTorch


def _to_torch(torch, x):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x), -1, 1)))


def _from_torch(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


TORCH_MAX = [
    ((2, 11, 3), 3, 2, 1, 1, False),
    ((1, 9, 2), 4, 3, 2, 2, True),
    ((2, 7, 8, 3), 3, 2, 1, 1, True),
    ((2, 9, 10, 2), (3, 2), (2, 1), (1, 0), (2, 3), False),
    ((1, 9, 9, 2), 3, 3, 1, 1, True),
    ((1, 7, 6, 6, 2), (2, 3, 2), (2, 1, 2), 1, (1, 2, 1), True),
]


@pytest.mark.torch
@pytest.mark.parametrize(
    "case", TORCH_MAX, ids=[f"{len(c[0]) - 2}d-{i}" for i, c in enumerate(TORCH_MAX)]
)
def test_max_pool_indices_and_gradient_match_torch(case, rng):
    torch = torch_or_skip()
    shape, window, strides, padding, dilation, ceil_mode = case
    n = len(shape) - 2
    fn = getattr(torch.nn.functional, f"max_pool{n}d")
    x = tie_heavy(rng, shape)
    # NaNs win, the last of a window's NaNs gives the index (as torch's CPU kernels)
    x.reshape(-1)[rng.choice(x.size, 4, replace=False)] = np.nan
    tx = _to_torch(torch, x).requires_grad_(True)
    tv, ti = fn(tx, window, strides, padding, dilation, ceil_mode=ceil_mode, return_indices=True)
    up = normal(rng, _from_torch(tv).shape)
    (tv * _to_torch(torch, up)).sum().backward()
    kw = dict(ceil_mode=ceil_mode, dilation=dilation)
    values, indices = pool.max_pool_with_indices(x, window, strides, padding, **kw)
    np.testing.assert_array_equal(np.asarray(values), _from_torch(tv))
    np.testing.assert_array_equal(np.asarray(indices), _from_torch(ti))
    np.testing.assert_array_equal(
        np.asarray(pool.max_pool(x, window, strides, padding, **kw)), _from_torch(tv)
    )
    # with ties, torch's gradient goes to the returned index: so does ours
    grad = jax.jit(
        jax.grad(lambda v: jnp.sum(pool.max_pool(v, window, strides, padding, **kw) * up))
    )(x)
    np.testing.assert_allclose(np.asarray(grad), _from_torch(tx.grad), rtol=1e-6, atol=1e-6)
    # max_unpool, torch's way round
    unpool = getattr(torch.nn.functional, f"max_unpool{n}d", None)
    if unpool is not None and dilation == 1 and not ceil_mode:
        tu = unpool(tv, ti, window, strides, padding, output_size=shape[1:-1])
        got = pool.max_unpool(values, indices, shape[1:-1])
        np.testing.assert_array_equal(np.asarray(got), _from_torch(tu))


@pytest.mark.torch
@pytest.mark.parametrize("n", [1, 2, 3])
def test_max_unpool_matches_torch(n, rng):
    torch = torch_or_skip()
    shape = (2, *[7, 8, 5][:n], 3)
    x = normal(rng, shape)
    F = torch.nn.functional
    tv, ti = getattr(F, f"max_pool{n}d")(_to_torch(torch, x), 2, 2, 1, return_indices=True)
    tu = getattr(F, f"max_unpool{n}d")(tv, ti, 2, 2, 1, output_size=shape[1:-1])
    got = pool.max_unpool(_from_torch(tv), _from_torch(ti).astype(np.int32), shape[1:-1])
    np.testing.assert_array_equal(np.asarray(got), _from_torch(tu))


@pytest.mark.torch
def test_nan_indices_match_torch():
    torch = torch_or_skip()
    x = np.array([1.0, np.nan, 3.0, np.nan, 0.0, 2.0, np.nan], np.float32).reshape(1, 7, 1)
    tv, ti = torch.nn.functional.max_pool1d(_to_torch(torch, x), 3, 1, 1, return_indices=True)
    values, indices = pool.max_pool_with_indices(x, 3, 1, 1)
    np.testing.assert_array_equal(np.asarray(values), _from_torch(tv))
    np.testing.assert_array_equal(np.asarray(indices), _from_torch(ti))


TORCH_AVG = [
    ((2, 11, 3), 3, 2, 1, False),
    ((1, 10, 2), 4, 3, 2, True),
    ((2, 7, 8, 3), 3, 2, 1, True),
    ((2, 9, 10, 2), (3, 2), (2, 1), (1, 0), False),
    ((1, 8, 9, 2), 2, None, 0, True),
    ((1, 9, 9, 2), 3, 3, 1, True),
    ((1, 6, 5, 7, 2), 3, 2, 1, True),
]


@pytest.mark.torch
@pytest.mark.parametrize(
    "case", TORCH_AVG, ids=[f"{len(c[0]) - 2}d-{i}" for i, c in enumerate(TORCH_AVG)]
)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_matches_torch(case, count_include_pad, rng):
    torch = torch_or_skip()
    shape, window, strides, padding, ceil_mode = case
    fn = getattr(torch.nn.functional, f"avg_pool{len(shape) - 2}d")
    x = normal(rng, shape)
    want = fn(
        _to_torch(torch, x),
        window,
        strides,
        padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )
    got = pool.avg_pool(
        x, window, strides, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad
    )
    np.testing.assert_allclose(np.asarray(got), _from_torch(want), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize(
    "shape, p, window, strides",
    [
        ((2, 8, 9, 3), 2.0, 2, None),
        ((2, 9, 9, 3), 3, 3, 2),
        ((1, 7, 8, 2), 1.5, (2, 3), (1, 2)),
        ((1, 8, 8, 2), 1, 2, 2),
        ((2, 11, 3), 2.0, 3, 2),
    ],
)
def test_lp_pool_matches_torch(shape, p, window, strides, rng):
    torch = torch_or_skip()
    fn = getattr(torch.nn.functional, f"lp_pool{len(shape) - 2}d")
    x = normal(rng, shape)  # negative values too: NaNs where torch has NaNs
    want = _from_torch(fn(_to_torch(torch, x), p, window, strides))
    got = np.asarray(pool.lp_pool(x, window, strides, p=p))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5, equal_nan=True)


@pytest.mark.torch
def test_lp_pool_ceil_mode_deviation_from_torch(rng):
    """torch rescales overhanging windows by prod(window) / cells; we sum the cells."""
    torch = torch_or_skip()
    x = np.abs(normal(rng, (1, 7, 8, 2))) + 0.1
    p = 2.0
    want = _from_torch(torch.nn.functional.lp_pool2d(_to_torch(torch, x), p, 3, 2, ceil_mode=True))
    got = np.asarray(pool.lp_pool(x, 3, 2, p=p, ceil_mode=True))
    # rows [0, 3), [2, 5), [4, 7) are whole; columns [0, 3), [2, 5), [4, 7), [6, 9) of 8:
    # the last hangs one cell off the end
    assert got.shape == (1, 3, 4, 2)
    counts = np.outer([3, 3, 3], [3, 3, 3, 2])
    np.testing.assert_allclose(got, (want**p * counts[None, ..., None] / 9) ** (1 / p), rtol=1e-5)
    assert not np.allclose(got[:, :, -1], want[:, :, -1])  # the overhanging column differs
    np.testing.assert_allclose(got[:, :, :-1], want[:, :, :-1], rtol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize(
    "shape, output_size",
    [
        ((2, 10, 3), 4),
        ((2, 9, 7, 3), (4, 3)),
        ((1, 5, 6, 2), (7, 9)),
        ((1, 8, 8, 2), (3, None)),
        ((1, 6, 5, 7, 2), (4, 2, 3)),
    ],
)
def test_adaptive_pools_match_torch(shape, output_size, rng):
    torch = torch_or_skip()
    n = len(shape) - 2
    F = torch.nn.functional
    x = normal(rng, shape)
    tx = _to_torch(torch, x)
    want_avg = _from_torch(getattr(F, f"adaptive_avg_pool{n}d")(tx, output_size))
    want_max = _from_torch(getattr(F, f"adaptive_max_pool{n}d")(tx, output_size))
    np.testing.assert_allclose(
        np.asarray(pool.adaptive_avg_pool(x, output_size)), want_avg, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(pool.adaptive_max_pool(x, output_size)), want_max)
