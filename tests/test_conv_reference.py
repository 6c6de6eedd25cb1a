"""The conv ops against independent references: plain-numpy loops, scipy and PyTorch.

``tests/reference.py`` holds float64 numpy implementations written from the
definitions (no jax, no cnn_jax). The library runs in float32 with
``Precision.HIGHEST`` and must agree to about 1e-4 relative to the output's scale.
The parametrisations are deterministic grids: ``itertools`` products of the options,
subsampled with a fixed seed so that every option and the important pairs of
options appear (``test_conv_grid_covers_every_option`` checks that).
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import jax
import numpy as np
import pytest
import scipy.signal

from cnn_jax.ops.conv import (
    conv,
    conv_transpose,
    depthwise_conv,
    locally_connected,
    separable_conv,
    tiled_conv,
)
from tests.conftest import torch_or_skip
from tests.reference import (
    conv_ref,
    conv_scalar_loops,
    conv_transpose_ref,
    locally_connected_ref,
    padding_pairs,
    separable_ref,
    tiled_conv_ref,
)

HIGHEST = jax.lax.Precision.HIGHEST
PADDING_KINDS = ("SAME", "VALID", "FULL", "CAUSAL", "int", "ints", "pairs")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
GROUPINGS = ("1", "2", "4", "depthwise")


def assert_close(got, want, rtol=1e-4):
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def jitted(op, *arrays, **kw):
    """``op(*arrays, precision=HIGHEST, **kw)`` under ``jax.jit``, as a float64 array.

    One compilation per case instead of one per primitive (much faster on CPU); the
    keyword arguments stay static and ``None`` arrays (no bias) stay ``None``.
    """
    present = [a is not None for a in arrays]

    def f(*args):
        it = iter(args)
        return op(*[next(it) if p else None for p in present], precision=HIGHEST, **kw)

    return np.asarray(jax.jit(f)(*[a for a in arrays if a is not None]), np.float64)


def randn(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def _seq(values, rng):
    """An int when all entries agree (half the time), else a tuple."""
    values = tuple(int(v) for v in values)
    if len(set(values)) == 1 and rng.random() < 0.5:
        return values[0]
    return values


def _padding_arg(kind, ndim, rng):
    if kind in ("SAME", "VALID", "FULL", "CAUSAL"):
        return kind.lower() if rng.random() < 0.3 else kind  # case-insensitive
    if kind == "int":
        return int(rng.integers(0, 4))
    if kind == "ints":
        return [int(v) for v in rng.integers(0, 4, ndim)]
    return [(int(lo), int(hi)) for lo, hi in rng.integers(0, 4, (ndim, 2))]


def _fit_size(start, padding, dim, ndim, window, strides, dilation, mode):
    """The smallest size >= ``start`` valid for the kernel and the padding mode."""
    i = start
    while True:
        sizes = [i] * ndim
        lo, hi = padding_pairs(padding, sizes, window, strides, dilation)[dim]
        e = dilation[dim] * (window[dim] - 1) + 1
        ok = i + lo + hi >= e
        ok &= not (mode == "reflect" and max(lo, hi) >= i)
        ok &= not (mode == "circular" and max(lo, hi) > i)
        if ok:
            return i
        i += 1


# --------------------------------------------------------------------------------------
# conv: the generated grid
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvCase:
    ndim: int
    kind: str
    grouping: str
    parity: str
    x_shape: tuple
    k_shape: tuple
    strides: object
    dilation: object
    padding: object
    mode: str
    groups: int
    bias: bool

    def id(self):
        k = "x".join(map(str, self.k_shape[: self.ndim]))
        return (
            f"{self.ndim}d-k{k}-s{self.strides}-d{self.dilation}-{self.padding}-"
            f"{self.mode}-g{self.groups}{'-b' if self.bias else ''}"
        ).replace(" ", "")


def _make_conv_case(ndim, kind, mode, grouping, parity, rng):
    if parity == "odd":
        window = rng.choice((1, 3, 3, 5) if ndim < 3 else (1, 3, 3), ndim)
    else:
        window = rng.choice((2, 4) if ndim < 3 else (2, 2, 4), ndim)
    window = tuple(int(k) for k in window)
    s = tuple(int(v) for v in rng.integers(1, 4, ndim))
    d = tuple(int(v) for v in rng.integers(1, 4, ndim))
    padding = _padding_arg(kind, ndim, rng)
    lo_size = (3, 9) if ndim < 3 else (2, 6)
    spatial = tuple(
        _fit_size(int(rng.integers(*lo_size)), padding, t, ndim, window, s, d, mode)
        for t in range(ndim)
    )
    if grouping == "depthwise":
        c_in = int(rng.integers(2, 5))
        groups, cig, c_out = c_in, 1, c_in * int(rng.integers(1, 3))
    else:
        groups = int(grouping)
        cig = int(rng.integers(1, 3))
        c_in, c_out = groups * cig, groups * int(rng.integers(1, 3))
    batch = 2 if ndim < 3 else 1
    return ConvCase(
        ndim=ndim,
        kind=kind,
        grouping=grouping,
        parity=parity,
        x_shape=(batch, *spatial, c_in),
        k_shape=(*window, cig, c_out),
        strides=_seq(s, rng),
        dilation=_seq(d, rng),
        padding=padding,
        mode=mode,
        groups=groups,
        bias=bool(rng.random() < 0.5),
    )


def _conv_cases():
    """A fixed-seed subsample of ndim x padding kind x mode x grouping x kernel parity.

    Walks the shuffled product once, keeping a case whenever it covers a combination
    not yet seen among: (ndim, kind, mode), (kind, grouping), (mode, grouping),
    (ndim, grouping, parity), (kind, parity). Strides, dilations (1-3 per dimension),
    kernel sizes, explicit paddings and input sizes are drawn per case.
    """
    rng = np.random.default_rng(20240611)
    grid = list(
        itertools.product((1, 2, 3), PADDING_KINDS, PADDING_MODES, GROUPINGS, ("odd", "even"))
    )
    order = rng.permutation(len(grid))
    seen, cases = set(), []
    for idx in order:
        ndim, kind, mode, grouping, parity = grid[idx]
        keys = {
            ("nkm", ndim, kind, mode),
            ("kg", kind, grouping),
            ("mg", mode, grouping),
            ("ngp", ndim, grouping, parity),
            ("kp", kind, parity),
        }
        if keys <= seen:
            continue
        seen |= keys
        cases.append(_make_conv_case(ndim, kind, mode, grouping, parity, rng))
    return cases


CONV_CASES = _conv_cases()


@pytest.mark.parametrize("case", CONV_CASES, ids=[c.id() for c in CONV_CASES])
def test_conv_matches_reference(case):
    rng = np.random.default_rng(0)
    x, k = randn(rng, case.x_shape), randn(rng, case.k_shape)
    b = randn(rng, case.k_shape[-1:]) if case.bias else None
    kw = dict(
        strides=case.strides,
        padding=case.padding,
        dilation=case.dilation,
        groups=case.groups,
        padding_mode=case.mode,
    )
    got = jitted(conv, x, k, b, **kw)
    assert_close(got, conv_ref(x, k, b, **kw))


def test_conv_grid_covers_every_option():
    cases = CONV_CASES
    assert {c.ndim for c in cases} == {1, 2, 3}
    assert {c.kind for c in cases} == set(PADDING_KINDS)
    assert {c.mode for c in cases} == set(PADDING_MODES)
    assert {(c.kind, c.mode) for c in cases} == set(itertools.product(PADDING_KINDS, PADDING_MODES))
    assert {c.grouping for c in cases} == set(GROUPINGS)
    strides = {v for c in cases for v in np.atleast_1d(c.strides)}
    dilations = {v for c in cases for v in np.atleast_1d(c.dilation)}
    assert strides == dilations == {1, 2, 3}
    sizes = {k for c in cases for k in c.k_shape[: c.ndim]}
    assert {1, 2, 3, 4, 5} <= sizes
    assert any(len(set(c.k_shape[: c.ndim])) > 1 for c in cases)  # non-square kernels
    assert any(len(set(c.x_shape[1:-1])) > 1 for c in cases)  # non-square inputs
    assert any(isinstance(c.strides, tuple) and len(set(c.strides)) > 1 for c in cases)
    assert any(c.bias for c in cases) and not all(c.bias for c in cases)
    assert 60 <= len(cases) <= 150


def test_conv_four_spatial_dims():
    rng = np.random.default_rng(1)
    x, k = randn(rng, (1, 5, 4, 6, 3, 4)), randn(rng, (2, 3, 1, 2, 2, 6))
    kw = dict(
        strides=(1, 2, 1, 2),
        padding="SAME",
        dilation=(2, 1, 1, 1),
        groups=2,
        padding_mode="reflect",
    )
    assert_close(jitted(conv, x, k, **kw), conv_ref(x, k, **kw))


# --------------------------------------------------------------------------------------
# the references themselves
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "padding,in_size,window,strides,dilation,expected",
    [
        ("SAME", (5,), (3,), 1, 1, [(1, 1)]),
        ("SAME", (5,), (4,), 1, 1, [(1, 2)]),  # even kernel: the smaller half before
        ("SAME", (5,), (4,), 2, 1, [(1, 2)]),  # o = 3: (3 - 1) 2 + 4 - 5 = 3
        ("SAME", (6,), (1,), 2, 1, [(0, 0)]),
        ("SAME", (7, 7), (3, 2), (2, 3), (2, 1), [(2, 2), (0, 1)]),
        ("FULL", (5,), (3,), 1, 2, [(4, 4)]),
        ("CAUSAL", (5, 5), (3, 2), 1, (3, 1), [(6, 0), (1, 0)]),
        ("VALID", (5,), (3,), 1, 1, [(0, 0)]),
        (2, (5, 5), (3, 3), 1, 1, [(2, 2), (2, 2)]),
        ([1, 0], (5, 5), (3, 3), 1, 1, [(1, 1), (0, 0)]),
        ([(0, 3), (2, 1)], (5, 5), (3, 3), 1, 1, [(0, 3), (2, 1)]),
    ],
)
def test_reference_padding_pairs(padding, in_size, window, strides, dilation, expected):
    assert padding_pairs(padding, in_size, window, strides, dilation) == expected


@pytest.mark.parametrize(
    "x_shape,k_shape,kw",
    [
        ((2, 7, 2), (3, 2, 3), dict(strides=2, padding=[(1, 2)], dilation=1)),
        (
            (1, 9, 4),
            (2, 2, 4),
            dict(strides=1, padding="SAME", dilation=3, groups=2, padding_mode="reflect"),
        ),
        (
            (1, 5, 6, 3),
            (2, 3, 1, 3),
            dict(
                strides=(2, 1), padding="FULL", dilation=(1, 2), groups=3, padding_mode="circular"
            ),
        ),
        (
            (1, 4, 5, 2),
            (3, 2, 2, 2),
            dict(strides=(1, 3), padding="CAUSAL", padding_mode="replicate"),
        ),
    ],
)
def test_reference_conv_equals_scalar_loops(x_shape, k_shape, kw):
    rng = np.random.default_rng(2)
    x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    np.testing.assert_allclose(
        conv_ref(x, k, **kw), conv_scalar_loops(x, k, **kw), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    "x_shape,k_shape,kw",
    [
        ((2, 9, 4), (3, 2, 6), dict(strides=2, padding="SAME", dilation=1, groups=2)),
        ((1, 8, 3), (2, 3, 2), dict(strides=3, padding=[(2, 1)], dilation=2)),
        (
            (1, 7, 6, 4),
            (3, 2, 1, 4),
            dict(strides=(2, 3), padding="FULL", dilation=(1, 2), groups=4),
        ),
        ((1, 6, 5, 2), (2, 3, 2, 3), dict(strides=(1, 2), padding="CAUSAL", dilation=1)),
        ((1, 5, 4, 6, 2), (2, 2, 3, 1, 4), dict(strides=(2, 1, 3), padding=1, groups=2)),
    ],
)
def test_reference_transpose_is_adjoint_of_reference_conv(x_shape, k_shape, kw):
    # <conv(x), y> == <x, conv_transpose(y)> for the two numpy references, each written
    # from its own definition (gather vs scatter).
    rng = np.random.default_rng(3)
    x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    fx = conv_ref(x, k, **kw)
    y = rng.standard_normal(fx.shape)
    ty = conv_transpose_ref(y, k, output_shape=x_shape[1:-1], **kw)
    assert ty.shape == x.shape
    np.testing.assert_allclose(np.vdot(fx, y), np.vdot(x, ty), rtol=1e-12)


# --------------------------------------------------------------------------------------
# scipy.signal.correlate
# --------------------------------------------------------------------------------------


def _scipy_same_pairs(window):
    """The padding of scipy's 'same': the centre of 'full' (lo = k // 2, hi = (k-1) // 2).

    scipy takes ``full[(k - 1) // 2 : (k - 1) // 2 + n]``; 'full' has ``k - 1`` before, so
    'same' has ``k - 1 - (k - 1) // 2 = k // 2`` before: the *larger* half before, where
    TensorFlow/XLA (and our 'SAME') put the smaller half before. The two agree for odd
    kernels; for even kernels scipy's output is ours shifted by one position.
    """
    return [(k // 2, (k - 1) // 2) for k in window]


@pytest.mark.parametrize("n,k", [(7, 1), (7, 2), (8, 3), (8, 4), (9, 5), (9, 6), (6, 6)])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_scipy_correlate_1d(n, k, mode):
    rng = np.random.default_rng(4)
    x, w = randn(rng, n), randn(rng, k)
    want = scipy.signal.correlate(
        x.astype(np.float64), w.astype(np.float64), mode=mode, method="direct"
    )
    xs, ws = x[None, :, None], w[:, None, None]
    ours = {"valid": "VALID", "full": "FULL", "same": "SAME"}[mode]
    got = conv(xs, ws, padding=ours, precision=HIGHEST)[0, :, 0]
    if mode == "same" and k % 2 == 0:
        # Even kernel: scipy's 'same' pads k/2 before and k/2 - 1 after, our 'SAME'
        # k/2 - 1 before and k/2 after (TF/XLA); scipy's centring is the explicit
        # padding below, and our 'SAME' is 'full' started one position later.
        full = scipy.signal.correlate(
            x.astype(np.float64), w.astype(np.float64), mode="full", method="direct"
        )
        assert_close(got, full[k // 2 : k // 2 + n])
        assert not np.allclose(got, want, rtol=1e-3, atol=1e-3)
        got = conv(xs, ws, padding=_scipy_same_pairs([k]), precision=HIGHEST)[0, :, 0]
    assert_close(got, want)


@pytest.mark.parametrize(
    "x_shape,window",
    [
        ((7, 8), (3, 3)),
        ((7, 8), (2, 3)),
        ((6, 9), (4, 2)),
        ((8, 6), (1, 4)),
        ((9, 7), (5, 2)),
        ((5, 5), (2, 2)),
    ],
)
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_scipy_correlate_2d(x_shape, window, mode):
    rng = np.random.default_rng(5)
    x, w = randn(rng, x_shape), randn(rng, window)
    want = scipy.signal.correlate(
        x.astype(np.float64), w.astype(np.float64), mode=mode, method="direct"
    )
    xs, ws = x[None, :, :, None], w[:, :, None, None]
    padding = {"valid": "VALID", "full": "FULL", "same": "SAME"}[mode]
    if mode == "same" and any(k % 2 == 0 for k in window):
        got_same = conv(xs, ws, padding="SAME", precision=HIGHEST)[0, :, :, 0]
        assert not np.allclose(got_same, want, rtol=1e-3, atol=1e-3)  # see 1-D test
        padding = _scipy_same_pairs(window)
    got = conv(xs, ws, padding=padding, precision=HIGHEST)[0, :, :, 0]
    assert_close(got, want)


# --------------------------------------------------------------------------------------
# PyTorch CPU
# --------------------------------------------------------------------------------------


def _to_torch_layout(x):
    """(N, *spatial, C) -> (N, C, *spatial)."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _from_torch_layout(x):
    return np.moveaxis(x, 1, -1)


def _torch_weight_to_ours(w):
    """torch conv weight (C_out, C_in/g, *k) -> ours (*k, C_in/g, C_out).

    Also right for ``conv_transpose``: torch's transposed weight is
    ``(C_in_T, C_out_T / g, *k)`` where ``C_in_T`` (its input channels) is the forward
    convolution's ``C_out`` and ``C_out_T`` its ``C_in``; i.e. it *is* the weight of the
    forward convolution whose adjoint it computes, so ``ours[..., i, o] = torch[o, i, ...]``
    for every group (``test_torch_conv_transpose_is_adjoint_of_torch_conv`` checks that
    premise, the ``conv_transpose`` tests the mapping).
    """
    n = w.ndim - 2
    return np.ascontiguousarray(np.transpose(w, (*range(2, n + 2), 1, 0)))


@dataclasses.dataclass(frozen=True)
class TorchCase:
    ndim: int
    c_in: int
    c_out: int
    groups: int
    window: tuple
    strides: tuple
    dilation: tuple
    padding: object  # tuple of ints, or 'same'
    mode: str
    spatial: tuple
    output_padding: tuple = ()

    def id(self):
        pad = (
            self.padding
            if isinstance(self.padding, str)
            else "p" + "x".join(map(str, self.padding))
        )
        out = f"-a{'x'.join(map(str, self.output_padding))}" if self.output_padding else ""
        return (
            f"{self.ndim}d-g{self.groups}-{self.c_in}to{self.c_out}-k"
            f"{'x'.join(map(str, self.window))}-s{'x'.join(map(str, self.strides))}-d"
            f"{'x'.join(map(str, self.dilation))}-{pad}-{self.mode}{out}"
        )


def _torch_conv_cases():
    rng = np.random.default_rng(7)
    cases = []
    combos = [(n, m, "ints") for n in (1, 2, 3) for m in PADDING_MODES for _ in range(2)]
    combos += [(n, m, "same") for n in (1, 2, 3) for m in ("zeros", "reflect")]
    for ndim, mode, kind in combos:
        groups = int(rng.choice((1, 2, 3)))
        c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        window = tuple(int(v) for v in rng.integers(1, 5 if ndim < 3 else 4, ndim))
        dilation = tuple(int(v) for v in rng.integers(1, 4, ndim))
        if kind == "same":
            strides, padding = (1,) * ndim, "same"
            pads = padding_pairs("SAME", [1] * ndim, window, strides, dilation)
        else:
            strides = tuple(int(v) for v in rng.integers(1, 4, ndim))
            padding = tuple(int(v) for v in rng.integers(0, 3, ndim))
            pads = [(p, p) for p in padding]
        spatial = tuple(
            max(
                int(rng.integers(3, 8 if ndim < 3 else 5)),
                max(lo, hi) + 1,
                d * (k - 1) + 1 - lo - hi,
            )
            for (lo, hi), k, d in zip(pads, window, dilation, strict=True)
        )
        cases.append(
            TorchCase(ndim, c_in, c_out, groups, window, strides, dilation, padding, mode, spatial)
        )
    return cases


TORCH_CONV_CASES = _torch_conv_cases()


@pytest.mark.torch
@pytest.mark.parametrize("case", TORCH_CONV_CASES, ids=[c.id() for c in TORCH_CONV_CASES])
def test_torch_conv(case):
    torch = torch_or_skip()
    rng = np.random.default_rng(8)
    n = case.ndim
    x = randn(rng, (2, *case.spatial, case.c_in))
    w_t = randn(rng, (case.c_out, case.c_in // case.groups, *case.window))
    b = randn(rng, (case.c_out,))
    module = getattr(torch.nn, f"Conv{n}d")(
        case.c_in,
        case.c_out,
        case.window,
        stride=case.strides,
        padding=case.padding,
        dilation=case.dilation,
        groups=case.groups,
        bias=True,
        padding_mode=case.mode,
        dtype=torch.float64,
    )
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w_t.astype(np.float64)))
        module.bias.copy_(torch.from_numpy(b.astype(np.float64)))
        with warnings.catch_warnings():
            # torch warns that 'same' with an even kernel may copy the input.
            warnings.simplefilter("ignore", UserWarning)
            want = module(torch.from_numpy(_to_torch_layout(x).astype(np.float64)))
    want = _from_torch_layout(want.numpy())
    k = _torch_weight_to_ours(w_t)
    padding = "SAME" if case.padding == "same" else list(case.padding)
    kw = dict(
        strides=case.strides,
        padding=padding,
        dilation=case.dilation,
        groups=case.groups,
        padding_mode=case.mode,
    )
    np.testing.assert_allclose(conv_ref(x, k, b, **kw), want, rtol=1e-10, atol=1e-10)
    assert_close(jitted(conv, x, k, b, **kw), want)


@pytest.mark.torch
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_torch_depthwise_channel_order(ndim):
    # Output channel c * m + j is input channel c with its j-th filter, as torch groups=C.
    torch = torch_or_skip()
    rng = np.random.default_rng(9)
    c, m = 3, 2
    window = (3, 2, 2)[:ndim]
    x = randn(rng, (2, *(5, 6, 4)[:ndim], c))
    w_t = randn(rng, (c * m, 1, *window))
    b = randn(rng, (c * m,))
    conv_nd = getattr(torch.nn.functional, f"conv{ndim}d")
    want = conv_nd(
        torch.from_numpy(_to_torch_layout(x).astype(np.float64)),
        torch.from_numpy(w_t.astype(np.float64)),
        torch.from_numpy(b.astype(np.float64)),
        padding=1,
        groups=c,
        stride=2,
    )
    got = depthwise_conv(x, _torch_weight_to_ours(w_t), b, strides=2, padding=1, precision=HIGHEST)
    assert_close(got, _from_torch_layout(want.numpy()))


def _torch_transpose_cases():
    rng = np.random.default_rng(10)
    cases = []
    for ndim, _ in itertools.product((1, 2, 3), range(8)):
        groups = int(rng.choice((1, 2, 3)))
        # forward: c_in -> c_out; the transposed op maps c_out -> c_in.
        c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        window = tuple(int(v) for v in rng.integers(1, 5 if ndim < 3 else 4, ndim))
        strides = tuple(int(v) for v in rng.integers(1, 4, ndim))
        dilation = tuple(int(v) for v in rng.integers(1, 4, ndim))
        padding = tuple(int(v) for v in rng.integers(0, 3, ndim))
        a = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(strides, dilation, strict=True))
        spatial = []
        for s, d, k, p, aa in zip(strides, dilation, window, padding, a, strict=True):
            i = int(rng.integers(2, 6 if ndim < 3 else 4))
            while s * (i - 1) + aa + d * (k - 1) + 1 - 2 * p < 1:
                i += 1
            spatial.append(i)
        cases.append(
            TorchCase(
                ndim,
                c_in,
                c_out,
                groups,
                window,
                strides,
                dilation,
                padding,
                "zeros",
                tuple(spatial),
                a,
            )
        )
    return cases


TORCH_TRANSPOSE_CASES = _torch_transpose_cases()


@pytest.mark.torch
@pytest.mark.parametrize("case", TORCH_TRANSPOSE_CASES, ids=[c.id() for c in TORCH_TRANSPOSE_CASES])
def test_torch_conv_transpose(case):
    torch = torch_or_skip()
    rng = np.random.default_rng(11)
    n = case.ndim
    y = randn(rng, (2, *case.spatial, case.c_out))
    # torch's transposed weight: (C_in_T, C_out_T / g, *k) = (our C_out, our C_in / g, *k).
    w_t = randn(rng, (case.c_out, case.c_in // case.groups, *case.window))
    b = randn(rng, (case.c_in,))
    want = getattr(torch.nn.functional, f"conv_transpose{n}d")(
        torch.from_numpy(_to_torch_layout(y).astype(np.float64)),
        torch.from_numpy(w_t.astype(np.float64)),
        torch.from_numpy(b.astype(np.float64)),
        stride=case.strides,
        padding=case.padding,
        output_padding=case.output_padding,
        groups=case.groups,
        dilation=case.dilation,
    )
    want = _from_torch_layout(want.numpy())
    k = _torch_weight_to_ours(w_t)
    kw = dict(
        strides=case.strides,
        padding=list(case.padding),
        dilation=case.dilation,
        groups=case.groups,
        output_padding=case.output_padding,
    )
    np.testing.assert_allclose(conv_transpose_ref(y, k, b, **kw), want, rtol=1e-10, atol=1e-10)
    assert_close(jitted(conv_transpose, y, k, b, **kw), want)


@pytest.mark.torch
def test_torch_conv_transpose_is_adjoint_of_torch_conv():
    # The premise of the weight mapping: torch's conv_transpose with weight W is the
    # adjoint of torch's conv with the same W, groups included (C_in != C_out).
    torch = torch_or_skip()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 9, 8, generator=g, dtype=torch.float64)
    w = torch.randn(6, 2, 3, 2, generator=g, dtype=torch.float64)  # groups=2: 4 -> 6
    kw = dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2), groups=2)
    fx = torch.nn.functional.conv2d(x, w, **kw)
    y = torch.randn(fx.shape, generator=g, dtype=torch.float64)
    # widths: 8 -> 2 forward; back: 3 (2 - 1) + 3 = 6, so output_padding 2 (< dilation)
    ty = torch.nn.functional.conv_transpose2d(y, w, output_padding=(0, 2), **kw)
    assert ty.shape == x.shape
    np.testing.assert_allclose(float((fx * y).sum()), float((x * ty).sum()), rtol=1e-12)


# --------------------------------------------------------------------------------------
# conv_transpose against the scatter-add reference
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TransposeCase:
    ndim: int
    y_shape: tuple
    k_shape: tuple
    strides: object
    dilation: object
    padding: object
    groups: int
    output_padding: object
    output_shape: object
    bias: bool

    def id(self):
        k = "x".join(map(str, self.k_shape[: self.ndim]))
        size = (
            f"os{self.output_shape}" if self.output_shape is not None else f"a{self.output_padding}"
        )
        return (
            f"{self.ndim}d-k{k}-s{self.strides}-d{self.dilation}-{self.padding}-"
            f"g{self.groups}-{size}{'-b' if self.bias else ''}"
        ).replace(" ", "")


def _transpose_cases():
    """ndim x padding kind x (output_padding | output_shape), groupings in rotation."""
    rng = np.random.default_rng(12)
    grid = list(itertools.product((1, 2, 3), PADDING_KINDS, ("output_padding", "output_shape")))
    groupings = rng.permutation(np.resize(np.array(GROUPINGS), len(grid)))
    cases = []
    for (ndim, kind, how), grouping in zip(grid, groupings, strict=True):
        window = tuple(int(v) for v in rng.integers(1, 5 if ndim < 3 else 4, ndim))
        s = tuple(int(v) for v in rng.integers(1, 4, ndim))
        d = tuple(int(v) for v in rng.integers(1, 4, ndim))
        padding = _padding_arg(kind, ndim, rng)
        same = kind == "SAME"
        spatial, a, out_shape = [], [], []
        for t in range(ndim):
            e = d[t] * (window[t] - 1) + 1
            i = int(rng.integers(2, 6 if ndim < 3 else 4))
            if how == "output_padding":
                at = 0 if same else int(rng.integers(0, max(s[t], d[t])))
            else:
                at = int(rng.integers(0, s[t]))
            while True:
                if same:
                    # any forward size in (s (i - 1), s i] maps to i under 'SAME'
                    o = s[t] * i if how == "output_padding" else s[t] * (i - 1) + 1 + at
                    break
                lo, hi = padding_pairs(padding, [1] * ndim, window, s, d)[t]
                o = s[t] * (i - 1) + e - lo - hi + at
                if o >= 1:
                    break
                i += 1
            spatial.append(i)
            a.append(at)
            out_shape.append(o)
        if grouping == "depthwise":
            c_out = int(rng.integers(2, 5))  # the transposed op's input channels
            groups, cig = c_out, int(rng.integers(1, 3))
        else:
            groups = int(grouping)
            cig, c_out = int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        by_shape = how == "output_shape"
        cases.append(
            TransposeCase(
                ndim=ndim,
                y_shape=(2 if ndim < 3 else 1, *spatial, c_out),
                k_shape=(*window, cig, c_out),
                strides=_seq(s, rng),
                dilation=_seq(d, rng),
                padding=padding,
                groups=groups,
                output_padding=0 if by_shape else _seq(a, rng),
                output_shape=tuple(out_shape) if by_shape else None,
                bias=bool(rng.random() < 0.5),
            )
        )
    return cases


TRANSPOSE_CASES = _transpose_cases()


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[c.id() for c in TRANSPOSE_CASES])
def test_conv_transpose_matches_scatter_reference(case):
    rng = np.random.default_rng(13)
    y, k = randn(rng, case.y_shape), randn(rng, case.k_shape)
    b = randn(rng, (case.k_shape[-2] * case.groups,)) if case.bias else None
    kw = dict(
        strides=case.strides,
        padding=case.padding,
        dilation=case.dilation,
        groups=case.groups,
        output_padding=case.output_padding,
        output_shape=case.output_shape,
    )
    want = conv_transpose_ref(y, k, b, **kw)
    if case.output_shape is not None:
        assert want.shape[1:-1] == case.output_shape
    assert_close(jitted(conv_transpose, y, k, b, **kw), want)


# --------------------------------------------------------------------------------------
# depthwise, separable
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape,window,m,kw,bias",
    [
        ((2, 9, 3), (3,), 2, dict(strides=2, padding="SAME", dilation=2), True),
        (
            (2, 8, 7, 4),
            (2, 3),
            1,
            dict(strides=(1, 2), padding="FULL", padding_mode="reflect"),
            False,
        ),
        ((1, 7, 6, 2), (4, 1), 3, dict(padding=[(2, 1), (0, 0)], padding_mode="circular"), True),
        (
            (1, 5, 6, 4, 2),
            (2, 3, 2),
            2,
            dict(strides=(2, 1, 1), padding="CAUSAL", dilation=(1, 1, 2), padding_mode="replicate"),
            True,
        ),
    ],
)
def test_depthwise_conv_matches_reference(x_shape, window, m, kw, bias):
    rng = np.random.default_rng(14)
    c = x_shape[-1]
    x, k = randn(rng, x_shape), randn(rng, (*window, 1, c * m))
    b = randn(rng, (c * m,)) if bias else None
    got = jitted(depthwise_conv, x, k, b, **kw)
    assert_close(got, conv_ref(x, k, b, groups=c, **kw))


@pytest.mark.parametrize(
    "x_shape,window,m,c_out,kw,full_rank_pw,bias",
    [
        ((2, 10, 3), (3,), 2, 5, dict(strides=2, padding="SAME", dilation=2), False, True),
        ((2, 8, 7, 4), (3, 2), 1, 6, dict(padding="VALID", padding_mode="reflect"), True, False),
        (
            (1, 7, 9, 2),
            (2, 3),
            3,
            4,
            dict(strides=(1, 3), padding=[(1, 0), (2, 2)], padding_mode="circular"),
            False,
            True,
        ),
        (
            (1, 5, 6, 4, 3),
            (2, 2, 3),
            2,
            2,
            dict(padding="FULL", dilation=(2, 1, 1), padding_mode="replicate"),
            True,
            True,
        ),
    ],
)
def test_separable_conv_is_depthwise_then_pointwise(
    x_shape, window, m, c_out, kw, full_rank_pw, bias
):
    rng = np.random.default_rng(15)
    c, n = x_shape[-1], len(window)
    x, dk = randn(rng, x_shape), randn(rng, (*window, 1, c * m))
    pk = randn(rng, (c * m, c_out))
    if full_rank_pw:
        pk = pk.reshape((1,) * n + pk.shape)
    b = randn(rng, (c_out,)) if bias else None
    got = jitted(separable_conv, x, dk, pk, b, **kw)
    want = separable_ref(x, dk, pk, b, **kw)
    assert_close(got, want)
    # the same, spelled out: depthwise reference, then a 1x1 conv reference
    h = conv_ref(x, dk, groups=c, **kw)
    pw = pk.reshape((1,) * n + (c * m, c_out))
    assert_close(got, conv_ref(h, pw, b))


# --------------------------------------------------------------------------------------
# locally connected, tiled
# --------------------------------------------------------------------------------------


def _out_grid(x_shape, window, kw):
    """The output grid, computed with the reference (a conv with one channel)."""
    x = np.zeros((1, *x_shape[1:-1], 1))
    k = np.zeros((*window, 1, 1))
    return conv_ref(x, k, **kw).shape[1:-1]


# tiled_conv's 3-D cases once failed (an einsum label clash with the feature axis).
LC_CASES = [
    ((2, 9, 3), (3,), 2, dict(strides=2, padding="VALID")),
    ((2, 8, 4), (2,), 3, dict(dilation=3, padding="SAME", padding_mode="reflect")),
    ((2, 6, 7, 2), (3, 2), 3, dict(strides=(1, 2), padding="FULL", padding_mode="circular")),
    (
        (1, 7, 5, 3),
        (2, 3),
        2,
        dict(padding=[(2, 0), (1, 1)], dilation=(2, 1), padding_mode="replicate"),
    ),
    ((1, 5, 4, 6, 2), (2, 2, 3), 2, dict(strides=(2, 1, 2), padding="CAUSAL")),
]
LC_BIASES = ["unshared", "shared", "none", "shared", "unshared"]
LC_IDS = [
    "1d-s2-valid",
    "1d-d3-same-reflect",
    "2d-full-circular",
    "2d-pairs-replicate",
    "3d-causal",
]
TILED_LC_IDS = LC_IDS


@pytest.mark.parametrize(
    "x_shape,window,c_out,kw,bias",
    [(*c, b) for c, b in zip(LC_CASES, LC_BIASES, strict=True)],
    ids=LC_IDS,
)
def test_locally_connected_matches_reference(x_shape, window, c_out, kw, bias):
    rng = np.random.default_rng(16)
    out = _out_grid(x_shape, window, kw)
    x, k = randn(rng, x_shape), randn(rng, (*out, *window, x_shape[-1], c_out))
    b = {"none": None, "shared": randn(rng, (c_out,)), "unshared": randn(rng, (*out, c_out))}[bias]
    got = jitted(locally_connected, x, k, b, **kw)
    assert_close(got, locally_connected_ref(x, k, b, **kw))


@pytest.mark.parametrize("x_shape,window,c_out,kw", LC_CASES, ids=TILED_LC_IDS)
def test_tiled_conv_with_unit_tile_is_conv(x_shape, window, c_out, kw):
    rng = np.random.default_rng(17)
    n = len(window)
    x, k = randn(rng, x_shape), randn(rng, (*window, x_shape[-1], c_out))
    b = randn(rng, (c_out,))
    got = jitted(tiled_conv, x, k.reshape((1,) * n + k.shape), b, **kw)
    want = conv_ref(x, k, b, **kw)
    np.testing.assert_allclose(
        tiled_conv_ref(x, k.reshape((1,) * n + k.shape), b, **kw), want, rtol=1e-12, atol=1e-12
    )
    assert_close(got, want)
    assert_close(got, jitted(conv, x, k, b, **kw))


@pytest.mark.parametrize("x_shape,window,c_out,kw", LC_CASES, ids=TILED_LC_IDS)
def test_tiled_conv_with_full_tile_is_locally_connected(x_shape, window, c_out, kw):
    # t equal to the output grid: position o uses kernel o mod t = o, i.e. the
    # locally connected kernel (*out, *window, C_in, C_out) is the same array, and a
    # rotating (*tile, C_out) bias is an unshared (*out, C_out) one.
    rng = np.random.default_rng(18)
    out = _out_grid(x_shape, window, kw)
    x, k = randn(rng, x_shape), randn(rng, (*out, *window, x_shape[-1], c_out))
    b = randn(rng, (*out, c_out))
    got = jitted(tiled_conv, x, k, b, **kw)
    want = locally_connected_ref(x, k, b, **kw)
    np.testing.assert_allclose(tiled_conv_ref(x, k, b, **kw), want, rtol=1e-12, atol=1e-12)
    assert_close(got, want)
    assert_close(got, jitted(locally_connected, x, k, b, **kw))


@pytest.mark.parametrize(
    "x_shape,window,tile,c_out,kw,bias",
    [
        ((2, 11, 3), (3,), (2,), 2, dict(padding="VALID"), "rotating"),  # 2 does not divide 9
        (
            (2, 9, 2),
            (2,),
            (4,),
            3,
            dict(strides=2, padding="SAME", padding_mode="reflect"),
            "shared",
        ),
        ((1, 5, 2), (3,), (7,), 2, dict(padding="FULL"), "none"),  # tile equal to out (7)
        (
            (2, 8, 9, 2),
            (3, 2),
            (2, 3),
            3,
            dict(strides=(1, 2), dilation=(2, 1), padding="CAUSAL", padding_mode="circular"),
            "rotating",
        ),
        (
            (1, 7, 6, 3),
            (2, 2),
            (3, 1),
            2,
            dict(padding=[(1, 2), (0, 1)], padding_mode="replicate"),
            "shared",
        ),
        ((1, 6, 5, 7, 2), (2, 3, 2), (2, 1, 3), 2, dict(strides=(1, 1, 2), padding=1), "rotating"),
    ],
    ids=[
        "1d-t2-valid",
        "1d-t4-s2-same-reflect",
        "1d-t7-equal-out-full",
        "2d-t2x3-causal-circular",
        "2d-t3x1-pairs-replicate",
        "3d-t2x1x3",
    ],
)
def test_tiled_conv_matches_reference(x_shape, window, tile, c_out, kw, bias):
    rng = np.random.default_rng(19)
    x = randn(rng, x_shape)
    k = randn(rng, (*tile, *window, x_shape[-1], c_out))
    b = {"none": None, "shared": randn(rng, (c_out,)), "rotating": randn(rng, (*tile, c_out))}[bias]
    got = jitted(tiled_conv, x, k, b, **kw)
    assert_close(got, tiled_conv_ref(x, k, b, **kw))


# --------------------------------------------------------------------------------------
# bias shapes
# --------------------------------------------------------------------------------------


def test_wrong_bias_shapes_raise():
    rng = np.random.default_rng(20)
    x = randn(rng, (1, 6, 5, 4))
    with pytest.raises(ValueError, match="bias"):
        conv(x, randn(rng, (3, 3, 2, 6)), randn(rng, (4,)), groups=2)
    with pytest.raises(ValueError, match="bias"):
        # the transposed op's bias has the forward C_in (4) channels, not C_out (6)
        conv_transpose(
            randn(rng, (1, 3, 3, 6)), randn(rng, (3, 3, 2, 6)), randn(rng, (6,)), groups=2
        )
    with pytest.raises(ValueError, match="bias"):
        depthwise_conv(x, randn(rng, (3, 3, 1, 8)), randn(rng, (4,)))
    with pytest.raises(ValueError, match="bias"):
        separable_conv(x, randn(rng, (3, 3, 1, 4)), randn(rng, (4, 7)), randn(rng, (4,)))
    with pytest.raises(ValueError, match="bias"):
        locally_connected(x, randn(rng, (4, 3, 3, 3, 4, 2)), randn(rng, (4, 2)))
    with pytest.raises(ValueError, match="bias"):
        tiled_conv(x, randn(rng, (2, 2, 3, 3, 4, 2)), randn(rng, (3, 2, 2)))
