"""Convolutions over ``jax.lax``: channels-last, 1, 2 or 3 (or more) spatial dimensions.

Layouts: inputs ``(N, *spatial, C)``, kernels ``(*window, C_in / groups, C_out)``
(NHWC / HWIO), outputs ``(N, *spatial', C_out)``. Every op resolves its padding with
``cnn_jax.ops.padding.resolve_padding`` and checks its arguments before any XLA
code is built, so a bad argument gives an error that names it and its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops import fast
from cnn_jax.ops._validate import (
    as_tuple,
    check_array_rank,
    check_precision,
    check_window,
    is_int,
    spatial_rank,
)
from cnn_jax.ops.padding import PaddingLike, Pairs, effective_kernel_size, resolve_padding
from cnn_jax.ops.shapes import check_output_padding

__all__ = [
    "PADDING_MODES",
    "conv",
    "conv_transpose",
    "depthwise_conv",
    "locally_connected",
    "separable_conv",
    "tiled_conv",
]

Array = Any
IntOrSeq = int | Sequence[int]

#: ``padding_mode`` values and the ``jnp.pad`` mode each one uses.
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class _Geometry(NamedTuple):
    n: int
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Pairs  # what is left for lax to pad with zeros


def _check_padding_mode(padding_mode: str) -> str:
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(
            f"`padding_mode` (={padding_mode!r}) must be one of "
            f"{', '.join(map(repr, PADDING_MODES))}"
        )
    return padding_mode


def _prepare(
    x: Array,
    window: Sequence[int],
    strides: IntOrSeq,
    padding: PaddingLike,
    dilation: IntOrSeq,
    padding_mode: str,
) -> tuple[Array, _Geometry]:
    """Resolves strides/dilation/padding, applies non-zero padding modes to ``x``.

    Returns ``x`` (padded if ``padding_mode != 'zeros'``) and the geometry whose
    ``padding`` is the zero padding still to be done by ``lax``.
    """
    n = len(window)
    s = as_tuple(strides, n, "strides")
    d = as_tuple(dilation, n, "dilation")
    mode = _check_padding_mode(padding_mode)
    spatial = tuple(x.shape[1:-1])
    pads = resolve_padding(padding, spatial, window, s, d)
    for dim, (i, k, dd, (lo, hi)) in enumerate(zip(spatial, window, d, pads)):
        eff = effective_kernel_size(k, dd)
        if i + lo + hi < eff:
            raise ValueError(
                f"kernel size {k} (dilated to {eff}) in spatial dimension {dim} is larger "
                f"than the padded input ({i} + {lo} + {hi} = {i + lo + hi}); "
                f"input shape {tuple(x.shape)}, padding {padding!r}"
            )
        if mode == "reflect" and max(lo, hi) >= i:
            raise ValueError(
                f"padding ({lo}, {hi}) in spatial dimension {dim} must be smaller than the "
                f"input size (={i}) with padding_mode='reflect'"
            )
        if mode == "circular" and max(lo, hi) > i:
            raise ValueError(
                f"padding ({lo}, {hi}) in spatial dimension {dim} must not exceed the input "
                f"size (={i}) with padding_mode='circular'"
            )
    if mode != "zeros" and any(lo or hi for lo, hi in pads):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)), mode=PADDING_MODES[mode])
        pads = ((0, 0),) * n
    return x, _Geometry(n, s, d, pads)


def _check_groups(groups: Any, c_in: int) -> int:
    if not is_int(groups):
        raise TypeError(f"`groups` must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"`groups` (={groups}) must be positive")
    if c_in % groups:
        raise ValueError(f"`groups` (={groups}) must divide the input channels (={c_in})")
    return int(groups)


def _add_bias(out: Array, bias: Array | None, shapes: Sequence[tuple[int, ...]]) -> Array:
    if bias is None:
        return out
    bias = jnp.asarray(bias)
    if tuple(bias.shape) not in shapes:
        allowed = " or ".join(str(s) for s in shapes)
        raise ValueError(f"`bias` must have shape {allowed}, got {tuple(bias.shape)}")
    return out + bias.astype(out.dtype)


def _promote(*arrays: Array) -> list[Array]:
    dtype = jnp.result_type(*arrays)
    return [jnp.asarray(a, dtype) for a in arrays]


def conv(
    x: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    strides: IntOrSeq = 1,
    padding: PaddingLike = "SAME",
    dilation: IntOrSeq = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    precision: lax.PrecisionLike = None,
) -> Array:
    """N-d convolution (cross-correlation, as in every framework), channels-last.

    ``out[n, o, c'] = sum_{w, c} x_padded[n, o * s + w * d, c] * kernel[w, c, c'] + bias[c']``
    with the sum over the ``C_in / groups`` channels of the group of ``c'``.

    Args:
      x: input of shape ``(N, *spatial, C_in)``.
      kernel: weights of shape ``(*window, C_in / groups, C_out)``.
      bias: optional ``(C_out,)``.
      strides: int or one per spatial dimension.
      padding: ``'SAME'``, ``'VALID'``, ``'FULL'``, ``'CAUSAL'``, an int, a sequence of
        ints or a sequence of ``(lo, hi)`` pairs (see ``cnn_jax.ops.padding``).
      dilation: kernel (atrous) dilation, int or one per spatial dimension.
      groups: number of channel groups (``C_in`` for a depthwise convolution).
      padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
      precision: passed to ``lax.conv_general_dilated``.

    Returns:
      The output, of shape ``(N, *conv_output_size(spatial, ...), C_out)``.

    Raises:
      TypeError: for arguments of the wrong type.
      ValueError: for wrong ranks, channels that do not match the kernel or
        ``groups``, non-positive strides/dilations, an empty kernel window, an unknown
        padding, padding mode or ``precision``, or a kernel larger than the padded
        input.
    """
    n = spatial_rank(x)
    check_array_rank(
        kernel,
        "kernel",
        n + 2,
        f"(*window, C_in / groups, C_out) for {n} spatial dimensions of `x` {tuple(x.shape)}",
    )
    check_window(kernel, "kernel", kernel.shape[:-2])
    check_precision(precision)
    c_in = x.shape[-1]
    groups = _check_groups(groups, c_in)
    if kernel.shape[-2] * groups != c_in:
        raise ValueError(
            f"`kernel` shape {tuple(kernel.shape)} expects {kernel.shape[-2]} x groups "
            f"(={groups}) = {kernel.shape[-2] * groups} input channels, but `x` has {c_in}"
        )
    if kernel.shape[-1] % groups:
        raise ValueError(
            f"`groups` (={groups}) must divide the output channels (={kernel.shape[-1]})"
        )
    x, kernel = _promote(x, kernel)
    x, g = _prepare(x, kernel.shape[:-2], strides, padding, dilation, padding_mode)
    # `fast.conv` is `lax.conv_general_dilated` with these arguments, with faster
    # derivatives where a fast path is enabled (`cnn_jax.ops.use_fast_paths`).
    geometry = fast.ConvGeometry(g.strides, tuple(g.padding), g.dilation, groups, precision)
    out = fast.conv(x, kernel, geometry)
    return _add_bias(out, bias, [(kernel.shape[-1],)])


def conv_transpose(
    y: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    strides: IntOrSeq = 1,
    padding: PaddingLike = "VALID",
    output_padding: IntOrSeq = 0,
    output_shape: Sequence[int] | None = None,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    precision: lax.PrecisionLike = None,
) -> Array:
    """Transposed convolution: the exact adjoint of ``conv`` with the same arguments.

    For every ``x`` and ``y``, ``<conv(x, k, ...), y> == <x, conv_transpose(y, k, ...)>``
    (without bias), where ``kernel`` is the *forward* kernel mapping ``C_in -> C_out``;
    this op maps ``C_out -> C_in``, as PyTorch's ``conv_transpose{1,2,3}d`` with the
    weight reshaped to HWIO. It is computed as the "fractionally strided" convolution
    of Dumoulin & Visin §4: ``y`` dilated with ``s - 1`` zeros, padded with
    ``d (k - 1) - p_lo`` before and ``d (k - 1) - p_hi + a`` after, convolved with the
    flipped kernel. The output size is
    ``o' = s (i' - 1) + a + d (k - 1) + 1 - (p_lo + p_hi)`` (relationship 14). On the
    CPU, with groups 1, a kernel equal to the stride (no dilation, no padding) is computed
    as one product and a reshape instead (fast path ``conv_transpose_tiles``, same values).

    Args:
      y: input of shape ``(N, *spatial, C_out)`` (the forward conv's output).
      kernel: the forward convolution's kernel, ``(*window, C_in / groups, C_out)``.
      bias: optional ``(C_in,)``, added to the output.
      strides: the forward convolution's strides.
      padding: the forward convolution's padding, any kind (see ``conv``). With
        ``'SAME'`` the forward padding depends on the forward input size: by default the
        output size is ``s * i'`` (as in Keras and Flax); ``output_shape`` picks another.
      output_padding: ``a``, extra rows/columns on the high side; each must be smaller
        than its stride or its dilation (PyTorch's rule). Resolves the ambiguity of
        strided convolutions, several input sizes of which give one output size. The
        adjoint identity holds for ``a < strides``; PyTorch also allows
        ``strides <= a < dilation``, whose extra positions get only the contributions
        that reach them (the forward conv of that size would have more outputs).
      output_shape: the spatial output shape, instead of ``output_padding``; it must be
        one that the forward convolution maps to ``y``'s spatial shape.
      dilation: the forward convolution's dilation.
      groups: the forward convolution's groups.
      precision: passed to ``lax.conv_general_dilated``.

    Returns:
      The output, of shape ``(N, *spatial', C_in)``.

    Raises:
      TypeError, ValueError: for wrong ranks or channels, bad strides/dilation/groups,
        an empty kernel window, an unknown ``precision``, an ``output_padding`` too
        large, an unreachable ``output_shape``, or a padding larger than the output.
    """
    n = spatial_rank(y, "y")
    check_array_rank(
        kernel,
        "kernel",
        n + 2,
        f"(*window, C_in / groups, C_out) for {n} spatial dimensions of `y` {tuple(y.shape)}",
    )
    check_window(kernel, "kernel", kernel.shape[:-2])
    check_precision(precision)
    c_out = kernel.shape[-1]
    if y.shape[-1] != c_out:
        raise ValueError(
            f"`y` has {y.shape[-1]} channels but `kernel` {tuple(kernel.shape)} has "
            f"{c_out} output channels (the forward conv's C_out, the last kernel axis)"
        )
    groups = _check_groups(groups, c_out)
    window = tuple(kernel.shape[:-2])
    s = as_tuple(strides, n, "strides")
    d = as_tuple(dilation, n, "dilation")
    in_sizes = tuple(y.shape[1:-1])
    eff = [effective_kernel_size(k, dd) for k, dd in zip(window, d)]

    if output_shape is not None:
        if any(as_tuple(output_padding, n, "output_padding", minimum=0)):
            raise ValueError(
                f"give either `output_padding` (={output_padding!r}) or `output_shape` "
                f"(={output_shape!r}), not both"
            )
        out_sizes = as_tuple(output_shape, n, "output_shape")
        pads = resolve_padding(padding, out_sizes, window, s, d)
        a = []
        for dim in range(n):
            lo, hi = pads[dim]
            base = s[dim] * (in_sizes[dim] - 1) + eff[dim] - (lo + hi)
            extra = out_sizes[dim] - base
            if not 0 <= extra < s[dim]:
                lo_ok, hi_ok = max(base, 1), base + s[dim] - 1
                raise ValueError(
                    f"`output_shape` (={tuple(out_sizes)!r}) is not reachable: in spatial "
                    f"dimension {dim}, a convolution with kernel {window[dim]}, stride "
                    f"{s[dim]}, dilation {d[dim]} and padding ({lo}, {hi}) maps sizes "
                    f"{lo_ok}..{hi_ok} (not {out_sizes[dim]}) to the input size {in_sizes[dim]}"
                )
            a.append(extra)
    else:
        a = list(as_tuple(output_padding, n, "output_padding", minimum=0))
        check_output_padding(a, s, d)
        if isinstance(padding, str) and padding.upper() == "SAME":
            if any(a):
                raise ValueError(
                    f"`output_padding` (={output_padding!r}) must be 0 with 'SAME' padding; "
                    "pass `output_shape` to choose among the sizes 'SAME' maps to one size"
                )
            out_sizes = tuple(i * ss for i, ss in zip(in_sizes, s))
            pads = resolve_padding(padding, out_sizes, window, s, d)
            a = [
                o - (ss * (i - 1) + e - lo - hi)
                for o, ss, i, e, (lo, hi) in zip(out_sizes, s, in_sizes, eff, pads)
            ]
        else:
            pads = resolve_padding(padding, in_sizes, window, s, d)  # independent of size
    lax_pads = []
    for dim in range(n):
        lo, hi = pads[dim]
        size = s[dim] * (in_sizes[dim] - 1) + a[dim] + eff[dim] - (lo + hi)
        if size < 1:
            raise ValueError(
                f"padding ({lo}, {hi}) in spatial dimension {dim} is larger than the "
                f"transposed convolution's output (size {size}) for input {in_sizes[dim]}, "
                f"kernel {window[dim]}, stride {s[dim]}, dilation {d[dim]}"
            )
        lax_pads.append((eff[dim] - 1 - lo, eff[dim] - 1 - hi + a[dim]))
    y, kernel = _promote(y, kernel)
    y = fast.keep_input(y)
    geometry = fast.TransposeGeometry(
        s, tuple(lax_pads), tuple(lo for lo, _ in pads), d, precision, groups
    )
    out = fast.conv_transpose(y, kernel, geometry)
    return _add_bias(out, bias, [(kernel.shape[-2] * groups,)])


def depthwise_conv(
    x: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    strides: IntOrSeq = 1,
    padding: PaddingLike = "SAME",
    dilation: IntOrSeq = 1,
    padding_mode: str = "zeros",
    precision: lax.PrecisionLike = None,
) -> Array:
    """Depthwise convolution: each input channel convolved with its own filters.

    Equal to ``conv(..., groups=C)``; output channel ``c * m + j`` is input channel ``c``
    convolved with its ``j``-th filter (``m`` the depth multiplier), as in Keras'
    ``DepthwiseConv2D`` and PyTorch's ``groups=C``.

    Args:
      x: input ``(N, *spatial, C)``.
      kernel: ``(*window, 1, C * m)``.
      bias: optional ``(C * m,)``.
      strides: see ``conv``.
      padding: see ``conv``.
      dilation: see ``conv``.
      padding_mode: see ``conv``.
      precision: see ``conv``.

    Returns:
      ``(N, *spatial', C * m)``.

    Raises:
      ValueError: if the kernel is not ``(*window, 1, C * m)``, and as ``conv``.
    """
    n = spatial_rank(x)
    check_array_rank(kernel, "kernel", n + 2, "(*window, 1, C * multiplier)")
    c = x.shape[-1]
    if kernel.shape[-2] != 1 or kernel.shape[-1] % c:
        raise ValueError(
            f"depthwise `kernel` must have shape (*window, 1, C * multiplier) with C = {c} "
            f"(the channels of `x`), got {tuple(kernel.shape)}"
        )
    return conv(
        x,
        kernel,
        bias,
        strides=strides,
        padding=padding,
        dilation=dilation,
        groups=c,
        padding_mode=padding_mode,
        precision=precision,
    )


def separable_conv(
    x: Array,
    depthwise_kernel: Array,
    pointwise_kernel: Array,
    bias: Array | None = None,
    *,
    strides: IntOrSeq = 1,
    padding: PaddingLike = "SAME",
    dilation: IntOrSeq = 1,
    padding_mode: str = "zeros",
    precision: lax.PrecisionLike = None,
) -> Array:
    """Depthwise separable convolution: depthwise, then a 1x1 pointwise convolution.

    As in Xception (Chollet 2017) and Keras' ``SeparableConv2D``: no non-linearity and
    no bias between the two steps; ``bias`` is added after the pointwise step.

    Args:
      x: input ``(N, *spatial, C)``.
      depthwise_kernel: ``(*window, 1, C * m)``.
      pointwise_kernel: ``(C * m, C_out)`` or ``(1, ..., 1, C * m, C_out)``.
      bias: optional ``(C_out,)``.
      strides: of the depthwise step.
      padding: of the depthwise step.
      dilation: of the depthwise step.
      padding_mode: of the depthwise step.
      precision: see ``conv``.

    Returns:
      ``(N, *spatial', C_out)``.

    Raises:
      ValueError: for kernels of the wrong shape, and as ``depthwise_conv``.
    """
    h = depthwise_conv(
        x,
        depthwise_kernel,
        strides=strides,
        padding=padding,
        dilation=dilation,
        padding_mode=padding_mode,
        precision=precision,
    )
    n = h.ndim - 2
    check_array_rank(pointwise_kernel, "pointwise_kernel", None, "")
    pk = pointwise_kernel
    if pk.ndim == 2:
        pk = pk.reshape((1,) * n + tuple(pk.shape))
    if pk.ndim != n + 2 or any(k != 1 for k in pk.shape[:-2]) or pk.shape[-2] != h.shape[-1]:
        raise ValueError(
            f"`pointwise_kernel` must have shape ({h.shape[-1]}, C_out) or "
            f"({', '.join(['1'] * n)}, {h.shape[-1]}, C_out), got {tuple(pointwise_kernel.shape)}"
        )
    return conv(h, pk, bias, strides=1, padding="VALID", precision=precision)


def _patches(x: Array, g: _Geometry, window: Sequence[int], precision: Any) -> Array:
    """``(N, *out, C * prod(window))`` patches, features ordered ``(C, *window)``."""
    n = g.n
    spec = "N" + "DHW"[-n:] + "C" if n <= 3 else None
    if spec is None:
        raise ValueError(f"patch-based ops support 1 to 3 spatial dimensions, got {n}")
    return lax.conv_general_dilated_patches(
        x,
        filter_shape=tuple(window),
        window_strides=g.strides,
        padding=g.padding,
        rhs_dilation=g.dilation,
        dimension_numbers=(spec, "DHW"[-n:] + "IO", spec),
        precision=precision if precision is not None else lax.Precision.HIGHEST,
    )


def _flatten_kernel(kernel: Array, n_lead: int, n: int) -> Array:
    """``(*lead, *window, C_in, C_out)`` -> ``(*lead, C_in * prod(window), C_out)``."""
    lead = kernel.shape[:n_lead]
    window = kernel.shape[n_lead : n_lead + n]
    c_in, c_out = kernel.shape[-2:]
    k = jnp.moveaxis(kernel, n_lead + n, n_lead)  # (*lead, C_in, *window, C_out)
    return k.reshape(*lead, c_in * int(np.prod(window)), c_out)


def locally_connected(
    x: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    strides: IntOrSeq = 1,
    padding: PaddingLike = "VALID",
    dilation: IntOrSeq = 1,
    padding_mode: str = "zeros",
    precision: lax.PrecisionLike = None,
) -> Array:
    """Locally connected layer: a convolution whose weights differ at every position.

    ``out[n, o, c'] = sum_{w, c} x_padded[n, o * s + w * d, c] * kernel[o, w, c, c']``
    (Taigman et al. 2014; Keras' ``LocallyConnected2D``).

    Args:
      x: input ``(N, *spatial, C_in)``.
      kernel: ``(*out_spatial, *window, C_in, C_out)``, one filter bank per output
        position; ``out_spatial`` must be ``conv_output_size(spatial, window, ...)``.
      bias: optional, ``(*out_spatial, C_out)`` (unshared) or ``(C_out,)``.
      strides: see ``conv``.
      padding: see ``conv`` (default ``'VALID'``).
      dilation: see ``conv``.
      padding_mode: see ``conv``.
      precision: of the patch extraction and the contraction.

    Returns:
      ``(N, *out_spatial, C_out)``.

    Raises:
      ValueError: if the kernel's rank, output grid or input channels do not match, or
        its window is empty.
    """
    n = spatial_rank(x)
    check_array_rank(
        kernel,
        "kernel",
        2 * n + 2,
        f"(*out_spatial, *window, C_in, C_out) for {n} spatial dimensions",
    )
    window = tuple(kernel.shape[n : 2 * n])
    check_window(kernel, "kernel", window)
    if kernel.shape[-2] != x.shape[-1]:
        raise ValueError(
            f"`kernel` {tuple(kernel.shape)} expects {kernel.shape[-2]} input "
            f"channels, but `x` has {x.shape[-1]}"
        )
    x, kernel = _promote(x, kernel)
    x, g = _prepare(x, window, strides, padding, dilation, padding_mode)
    patches = _patches(x, g, window, precision)
    out_sp = tuple(patches.shape[1:-1])
    if tuple(kernel.shape[:n]) != out_sp:
        raise ValueError(
            f"`kernel` {tuple(kernel.shape)} has an output grid {tuple(kernel.shape[:n])}, but "
            f"the input {tuple(x.shape)} with window {window} gives {out_sp}"
        )
    k = _flatten_kernel(kernel, n, n)
    out = jnp.einsum("n...f,...fo->n...o", patches, k, precision=precision)
    return _add_bias(out, bias, [(*out_sp, kernel.shape[-1]), (kernel.shape[-1],)])


def tiled_conv(
    x: Array,
    kernels: Array,
    bias: Array | None = None,
    *,
    strides: IntOrSeq = 1,
    padding: PaddingLike = "VALID",
    dilation: IntOrSeq = 1,
    padding_mode: str = "zeros",
    precision: lax.PrecisionLike = None,
) -> Array:
    """Tiled convolution: ``t`` kernels used in rotation across output positions.

    Output position ``o`` uses kernel ``o mod t`` (per dimension), as in Ngiam et al.
    (2010) and Goodfellow, Bengio & Courville, *Deep Learning* §9.5. ``t = 1`` everywhere
    is a convolution; ``t`` equal to the output grid is a locally connected layer.

    Args:
      x: input ``(N, *spatial, C_in)``.
      kernels: ``(*tile, *window, C_in, C_out)``.
      bias: optional, ``(C_out,)`` or ``(*tile, C_out)`` (rotating with the kernels).
      strides: see ``conv``.
      padding: see ``conv`` (default ``'VALID'``).
      dilation: see ``conv``.
      padding_mode: see ``conv``.
      precision: of the patch extraction and the contraction.

    Returns:
      ``(N, *out_spatial, C_out)``.

    Raises:
      ValueError: if the kernels' rank or channels do not match ``x``, or their window
        is empty.
    """
    n = spatial_rank(x)
    check_array_rank(
        kernels, "kernels", 2 * n + 2, f"(*tile, *window, C_in, C_out) for {n} spatial dimensions"
    )
    tile = tuple(kernels.shape[:n])
    window = tuple(kernels.shape[n : 2 * n])
    check_window(kernels, "kernels", window)
    if kernels.shape[-2] != x.shape[-1]:
        raise ValueError(
            f"`kernels` {tuple(kernels.shape)} expect {kernels.shape[-2]} input "
            f"channels, but `x` has {x.shape[-1]}"
        )
    x, kernels = _promote(x, kernels)
    x, g = _prepare(x, window, strides, padding, dilation, padding_mode)
    patches = _patches(x, g, window, precision)
    batch, *out_sp, feat = patches.shape
    if any(t < 1 or t > o for t, o in zip(tile, out_sp)):
        raise ValueError(
            f"`kernels` {tuple(kernels.shape)} tile the output grid {tuple(out_sp)} with "
            f"{tile} kernels per dimension; each tile must be between 1 and the output size"
        )
    # Pad the output grid up to a multiple of the tile and split each axis into
    # (blocks, tile): position b * t + r uses kernel r.
    blocks = [-(-o // t) for o, t in zip(out_sp, tile)]
    patches = jnp.pad(
        patches, ((0, 0), *[(0, b * t - o) for b, t, o in zip(blocks, tile, out_sp)], (0, 0))
    )
    split = [batch]
    for b, t in zip(blocks, tile):
        split += [b, t]
    patches = patches.reshape(*split, feat)
    letters = "abcdeghijklm"  # no "f", "y", "z": those label features and batch
    blk = letters[:n]
    til = letters[n : 2 * n]
    spec_p = "z" + "".join(b + t for b, t in zip(blk, til)) + "f"
    spec_k = til + "fy"
    spec_o = "z" + "".join(b + t for b, t in zip(blk, til)) + "y"
    k = _flatten_kernel(kernels, n, n)
    out = jnp.einsum(f"{spec_p},{spec_k}->{spec_o}", patches, k, precision=precision)
    c_out = kernels.shape[-1]
    if bias is not None:
        bias = jnp.asarray(bias)
        if tuple(bias.shape) == (*tile, c_out):
            shape = [1]
            for t in tile:
                shape += [1, t]
            out = out + bias.reshape(*shape, c_out).astype(out.dtype)
            bias = None
    out = out.reshape(batch, *[b * t for b, t in zip(blocks, tile)], c_out)
    out = out[(slice(None), *[slice(0, o) for o in out_sp], slice(None))]
    return _add_bias(out, bias, [(c_out,), (*tile, c_out)])
