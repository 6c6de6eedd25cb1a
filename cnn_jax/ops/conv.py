"""Convolutions over ``jax.lax``: channels-last, 1, 2 or 3 (or more) spatial dimensions.

Layouts: inputs ``(N, *spatial, C)``, kernels ``(*window, C_in / groups, C_out)``
(NHWC / HWIO), outputs ``(N, *spatial', C_out)``. Every op resolves its padding with
``cnn_jax.ops.padding.resolve_padding`` and checks its arguments before any XLA
code is built, so a bad argument gives an error that names it and its value; sizes
beyond ``cnn_jax.ops.limits`` (a dimension past ``2**31 - 1``, an array past ``2**40``
elements) are such errors too.

Dtypes: the input and the kernel are promoted to their common dtype. Floating (and
boolean) convolutions return that dtype. Integer convolutions add up in a wide integer
type and return it: ``int32`` (``uint32`` for unsigned inputs), ``int64``/``uint64`` with
``jax_enable_x64`` (``preferred_element_type`` of ``lax.conv_general_dilated``). So an
``int8`` window of nine products ``100 * 100`` gives 90000, where ``lax`` with its
default would wrap to -112; ``out.astype(jnp.int8)`` gives the wrapped value back. Sums
beyond the wide type still wrap (``int32`` inputs without x64). PyTorch refuses integer
convolutions on the CPU; this is numpy's rule for integer sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jax import lax

from cnn_jax.ops import conv_fast, conv_transpose_fast
from cnn_jax.ops._conv_common import PADDING_MODES, add_bias, check_groups, prepare, promote
from cnn_jax.ops._validate import (
    as_tuple,
    check_array_rank,
    check_precision,
    check_window,
    spatial_rank,
)
from cnn_jax.ops.conv_local import locally_connected, tiled_conv
from cnn_jax.ops.geometry import TransposeGeometry
from cnn_jax.ops.limits import check_elements, check_extent, check_transpose_extents
from cnn_jax.ops.padding import PaddingLike, effective_kernel_size, resolve_padding
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


def _hashable(precision: Any) -> Any:
    """``precision`` with a list made a tuple (the same to ``lax``; a static argument)."""
    return tuple(precision) if isinstance(precision, list) else precision


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
      The output, of shape ``(N, *conv_output_size(spatial, ...), C_out)``, of the
      promoted dtype, or for integers of the wide integer type (module docstring).

    Raises:
      TypeError: for arguments of the wrong type.
      ValueError: for wrong ranks, channels that do not match the kernel or
        ``groups``, non-positive strides/dilations, an empty kernel window, an unknown
        padding, padding mode or ``precision``, a kernel larger than the padded input,
        or sizes beyond ``cnn_jax.ops.limits`` (a padded input, dilated kernel or output
        longer than ``2**31 - 1``, or an output of more than ``2**40`` elements).
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
    groups = check_groups(groups, c_in)
    if kernel.shape[-2] * groups != c_in:
        raise ValueError(
            f"`kernel` shape {tuple(kernel.shape)} expects {kernel.shape[-2]} x groups "
            f"(={groups}) = {kernel.shape[-2] * groups} input channels, but `x` has {c_in}"
        )
    if kernel.shape[-1] % groups:
        raise ValueError(
            f"`groups` (={groups}) must divide the output channels (={kernel.shape[-1]})"
        )
    x, kernel = promote(x, kernel)
    x, g = prepare(x, kernel.shape[:-2], strides, padding, dilation, padding_mode, kernel.shape[-1])
    # `conv_fast.conv` is `lax.conv_general_dilated` with these arguments, with faster
    # derivatives where a fast path is enabled (`cnn_jax.ops.use_fast_paths`).
    out = conv_fast.conv(x, kernel, g._replace(groups=groups, precision=_hashable(precision)))
    return add_bias(out, bias, [(kernel.shape[-1],)])


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
      The output, of shape ``(N, *spatial', C_in)``, of the dtype ``conv`` gives.

    Raises:
      TypeError, ValueError: for wrong ranks or channels, bad strides/dilation/groups,
        an empty kernel window, an unknown ``precision``, an ``output_padding`` too
        large, an unreachable ``output_shape``, a padding larger than the output, or
        sizes beyond ``cnn_jax.ops.limits``.
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
    groups = check_groups(groups, c_out)
    window = tuple(kernel.shape[:-2])
    s = as_tuple(strides, n, "strides")
    d = as_tuple(dilation, n, "dilation")
    in_sizes = tuple(y.shape[1:-1])
    eff = [effective_kernel_size(k, dd) for k, dd in zip(window, d)]
    check_transpose_extents(in_sizes, window, s, d)

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
    lax_pads, sizes = [], []
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
        sizes.append(size)
    culprit = f"`strides` (={strides!r}) with `dilation` (={dilation!r})"
    for dim, size in enumerate(sizes):
        check_extent(size, f"the output in spatial dimension {dim}", culprit)
    batch = y.shape[0]
    check_elements((batch, *sizes, kernel.shape[-2] * groups), "the output", culprit)
    dilated = (
        ss * (i - 1) + 1 + max(lo, 0) + max(hi, 0) for ss, i, (lo, hi) in zip(s, in_sizes, lax_pads)
    )
    check_elements((batch, *dilated, c_out), "the zero-dilated, padded input", culprit)
    y, kernel = promote(y, kernel)
    geometry = TransposeGeometry(
        s, tuple(lax_pads), tuple(lo for lo, _ in pads), d, _hashable(precision), groups
    )
    out = conv_transpose_fast.conv_transpose(y, kernel, geometry)
    return add_bias(out, bias, [(kernel.shape[-2] * groups,)])


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
      ``(N, *spatial', C * m)``, of the dtype ``conv`` gives.

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
      ``(N, *spatial', C_out)``, of the dtype ``conv`` gives (both steps add up integers
      in the wide type).

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
