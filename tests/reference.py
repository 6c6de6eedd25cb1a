"""Plain-numpy float64 reference implementations of the convolution ops, for tests.

Nothing here imports ``cnn_jax``, ``jax`` or any other convolution routine: every op is
written from its definition, as explicit loops over window offsets or output
positions, so that the tests compare the library against an independent oracle.

Layouts follow the library: inputs ``(N, *spatial, C)``, kernels
``(*window, C_in / groups, C_out)``; locally connected kernels
``(*out_spatial, *window, C_in, C_out)``; tiled kernels ``(*tile, *window, C_in, C_out)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

#: ``padding_mode`` -> ``np.pad`` mode.
NP_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _tup(v, n):
    return (int(v),) * n if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)


def _eff(k, d):
    """Extent of a dilated kernel: ``d (k - 1) + 1``."""
    return d * (k - 1) + 1


def padding_pairs(padding, in_size, window, strides, dilation):
    """``(lo, hi)`` per spatial dimension, written from the formulas.

    * 'VALID': 0; 'FULL': ``e - 1`` each side; 'CAUSAL': ``e - 1`` before, 0 after,
      with ``e = d (k - 1) + 1``;
    * 'SAME': output ``ceil(i / s)``; total ``max((o - 1) s + e - i, 0)``, the smaller
      half before (TensorFlow/XLA);
    * int p: ``(p, p)``; ints: ``(p_t, p_t)``; pairs: as given.
    """
    n = len(window)
    s, d = _tup(strides, n), _tup(dilation, n)
    eff = [_eff(k, dd) for k, dd in zip(window, d, strict=True)]
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return [(0, 0)] * n
        if mode == "FULL":
            return [(e - 1, e - 1) for e in eff]
        if mode == "CAUSAL":
            return [(e - 1, 0) for e in eff]
        if mode == "SAME":
            pairs = []
            for i, e, ss in zip(in_size, eff, s, strict=True):
                o = math.ceil(i / ss)
                total = max((o - 1) * ss + e - i, 0)
                pairs.append((total // 2, total - total // 2))
            return pairs
        raise ValueError(padding)
    if isinstance(padding, (int, np.integer)):
        return [(int(padding), int(padding))] * n
    padding = list(padding)
    if all(isinstance(p, (int, np.integer)) for p in padding):
        return [(int(p), int(p)) for p in padding]
    return [(int(lo), int(hi)) for lo, hi in padding]


def pad_input(x, pads, padding_mode="zeros"):
    """Pads the spatial dimensions of ``(N, *spatial, C)`` with ``np.pad``."""
    return np.pad(x, [(0, 0), *pads, (0, 0)], mode=NP_PAD_MODES[padding_mode])


def _geometry(x, window, strides, padding, dilation, padding_mode):
    """Returns the padded input, strides, dilations and output spatial shape."""
    n = len(window)
    s, d = _tup(strides, n), _tup(dilation, n)
    pads = padding_pairs(padding, x.shape[1:-1], window, s, d)
    xp = pad_input(np.asarray(x, np.float64), pads, padding_mode)
    out = tuple(
        (p - _eff(k, dd)) // ss + 1
        for p, k, ss, dd in zip(xp.shape[1:-1], window, s, d, strict=True)
    )
    assert all(o >= 1 for o in out), "kernel larger than the padded input"
    return xp, s, d, out


def conv_ref(
    x,
    kernel,
    bias=None,
    *,
    strides=1,
    padding="VALID",
    dilation=1,
    groups=1,
    padding_mode="zeros",
):
    """``out[n, o, c'] = sum_{w, c in group(c')} xp[n, o s + w d, c] kernel[w, c, c'] + b[c']``.

    One ``einsum`` per window offset ``w`` and group, over the strided window of ``xp``
    that offset reads.
    """
    kernel = np.asarray(kernel, np.float64)
    n = x.ndim - 2
    window = kernel.shape[:n]
    xp, s, d, out_sp = _geometry(x, window, strides, padding, dilation, padding_mode)
    cig, c_out = kernel.shape[-2:]
    assert cig * groups == x.shape[-1] and c_out % groups == 0
    cog = c_out // groups
    out = np.zeros((x.shape[0], *out_sp, c_out))
    for w in itertools.product(*map(range, window)):
        win = tuple(
            slice(wi * di, wi * di + si * (oi - 1) + 1, si)
            for wi, di, si, oi in zip(w, d, s, out_sp, strict=True)
        )
        patch = xp[(slice(None), *win, slice(None))]  # (N, *out, C_in)
        for g in range(groups):
            out[..., g * cog : (g + 1) * cog] += np.einsum(
                "...c,cd->...d",
                patch[..., g * cig : (g + 1) * cig],
                kernel[w][:, g * cog : (g + 1) * cog],
            )
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out


def conv_scalar_loops(
    x, kernel, *, strides=1, padding="VALID", dilation=1, groups=1, padding_mode="zeros"
):
    """``conv_ref`` as one scalar loop over every index (tiny inputs only: a self-check)."""
    kernel = np.asarray(kernel, np.float64)
    n = x.ndim - 2
    window = kernel.shape[:n]
    xp, s, d, out_sp = _geometry(x, window, strides, padding, dilation, padding_mode)
    cig, c_out = kernel.shape[-2:]
    cog = c_out // groups
    out = np.zeros((x.shape[0], *out_sp, c_out))
    for b, o, co in itertools.product(
        range(x.shape[0]), itertools.product(*map(range, out_sp)), range(c_out)
    ):
        g = co // cog
        acc = 0.0
        for w, ci in itertools.product(itertools.product(*map(range, window)), range(cig)):
            pos = tuple(oi * si + wi * di for oi, si, wi, di in zip(o, s, w, d, strict=True))
            acc += xp[(b, *pos, g * cig + ci)] * kernel[(*w, ci, co)]
        out[(b, *o, co)] = acc
    return out


def conv_transpose_ref(
    y,
    kernel,
    bias=None,
    *,
    strides=1,
    padding="VALID",
    dilation=1,
    groups=1,
    output_padding=0,
    output_shape=None,
):
    """The scatter-add definition of the transposed convolution.

    Every input position ``o`` scatters ``y[o] @ kernel[w].T`` to output position
    ``o s + w d - p_lo`` for every window offset ``w``; positions outside
    ``[0, o')`` are dropped, with ``o' = s (i' - 1) + d (k - 1) + 1 - p_lo - p_hi + a``
    (``a`` the output padding, extending the high side). ``padding`` is the forward
    convolution's; for 'SAME' it is resolved at the forward input size ``o'``, which
    defaults to ``s i'``. ``output_shape`` gives ``o'`` directly.
    """
    kernel = np.asarray(kernel, np.float64)
    y = np.asarray(y, np.float64)
    n = y.ndim - 2
    window = kernel.shape[:n]
    s, d = _tup(strides, n), _tup(dilation, n)
    in_sp = y.shape[1:-1]
    eff = [_eff(k, dd) for k, dd in zip(window, d, strict=True)]
    if output_shape is not None:
        out_sp = _tup(output_shape, n)
    elif isinstance(padding, str) and padding.upper() == "SAME":
        out_sp = tuple(ss * i for ss, i in zip(s, in_sp, strict=True))
    else:
        a = _tup(output_padding, n)
        pads = padding_pairs(padding, in_sp, window, s, d)  # size-independent here
        out_sp = tuple(
            ss * (i - 1) + e - lo - hi + aa
            for ss, i, e, (lo, hi), aa in zip(s, in_sp, eff, pads, a, strict=True)
        )
    pads = padding_pairs(padding, out_sp, window, s, d)
    cig, c_out = kernel.shape[-2:]
    cog = c_out // groups
    out = np.zeros((y.shape[0], *out_sp, cig * groups))
    for o in itertools.product(*map(range, in_sp)):
        for w in itertools.product(*map(range, window)):
            pos = tuple(
                oi * si + wi * di - lo
                for oi, si, wi, di, (lo, _) in zip(o, s, w, d, pads, strict=True)
            )
            if not all(0 <= p < size for p, size in zip(pos, out_sp, strict=True)):
                continue
            for g in range(groups):
                out[(slice(None), *pos, slice(g * cig, (g + 1) * cig))] += (
                    y[(slice(None), *o, slice(g * cog, (g + 1) * cog))]
                    @ kernel[w][:, g * cog : (g + 1) * cog].T
                )
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out


def locally_connected_ref(
    x, kernel, bias=None, *, strides=1, padding="VALID", dilation=1, padding_mode="zeros"
):
    """``out[n, o, c'] = sum_{w, c} xp[n, o s + w d, c] kernel[o, w, c, c'] + bias``.

    A loop over output positions and window offsets; ``bias`` is ``(C_out,)`` or
    ``(*out_spatial, C_out)`` (numpy broadcasting adds either).
    """
    kernel = np.asarray(kernel, np.float64)
    n = x.ndim - 2
    window = kernel.shape[n : 2 * n]
    xp, s, d, out_sp = _geometry(x, window, strides, padding, dilation, padding_mode)
    assert kernel.shape[:n] == out_sp, (kernel.shape, out_sp)
    out = np.zeros((x.shape[0], *out_sp, kernel.shape[-1]))
    for o in itertools.product(*map(range, out_sp)):
        for w in itertools.product(*map(range, window)):
            pos = tuple(oi * si + wi * di for oi, si, wi, di in zip(o, s, w, d, strict=True))
            out[(slice(None), *o)] += xp[(slice(None), *pos)] @ kernel[(*o, *w)]
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out


def tiled_conv_ref(
    x, kernels, bias=None, *, strides=1, padding="VALID", dilation=1, padding_mode="zeros"
):
    """Output position ``o`` uses ``kernels[o mod t]`` (per dimension).

    ``bias`` is ``(C_out,)``, or ``(*tile, C_out)`` rotating with the kernels.
    """
    kernels = np.asarray(kernels, np.float64)
    n = x.ndim - 2
    tile = kernels.shape[:n]
    window = kernels.shape[n : 2 * n]
    xp, s, d, out_sp = _geometry(x, window, strides, padding, dilation, padding_mode)
    bias = None if bias is None else np.asarray(bias, np.float64)
    out = np.zeros((x.shape[0], *out_sp, kernels.shape[-1]))
    for o in itertools.product(*map(range, out_sp)):
        r = tuple(oi % ti for oi, ti in zip(o, tile, strict=True))
        for w in itertools.product(*map(range, window)):
            pos = tuple(oi * si + wi * di for oi, si, wi, di in zip(o, s, w, d, strict=True))
            out[(slice(None), *o)] += xp[(slice(None), *pos)] @ kernels[(*r, *w)]
        if bias is not None:
            out[(slice(None), *o)] += bias if bias.ndim == 1 else bias[r]
    return out


def separable_ref(
    x,
    depthwise_kernel,
    pointwise_kernel,
    bias=None,
    *,
    strides=1,
    padding="VALID",
    dilation=1,
    padding_mode="zeros",
):
    """Depthwise (``conv_ref`` with ``groups = C``) then a 1x1 channel matmul, then bias."""
    h = conv_ref(
        x,
        depthwise_kernel,
        strides=strides,
        padding=padding,
        dilation=dilation,
        groups=x.shape[-1],
        padding_mode=padding_mode,
    )
    pw = np.asarray(pointwise_kernel, np.float64)
    out = h @ pw.reshape(pw.shape[-2:])
    if bias is not None:
        out = out + np.asarray(bias, np.float64)
    return out
