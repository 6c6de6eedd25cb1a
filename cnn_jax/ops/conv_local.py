"""Locally connected and tiled convolutions: weights that vary across output positions.

Both extract every window's patch (``lax.conv_general_dilated_patches``) and contract
it with the weights of its position: one filter bank per position (locally connected,
Taigman et al. 2014) or ``t`` banks in rotation (tiled, Ngiam et al. 2010). Layouts and
dtypes as in ``cnn_jax.ops.conv`` (integers add up in, and return, a wide integer type).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops._conv_common import accumulator, add_bias, prepare, promote
from cnn_jax.ops._validate import check_array_rank, check_window, spatial_rank
from cnn_jax.ops.geometry import Geometry
from cnn_jax.ops.padding import PaddingLike

__all__ = ["locally_connected", "tiled_conv"]

Array = Any
IntOrSeq = int | Sequence[int]


def _patches(x: Array, g: Geometry, window: Sequence[int], precision: Any) -> Array:
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
      ``(N, *out_spatial, C_out)``, of the dtype ``conv`` gives (integers: a wide type).

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
    x, kernel = promote(x, kernel)
    x, g = prepare(x, window, strides, padding, dilation, padding_mode, kernel.shape[-1])
    patches = _patches(x, g, window, precision)
    out_sp = tuple(patches.shape[1:-1])
    if tuple(kernel.shape[:n]) != out_sp:
        raise ValueError(
            f"`kernel` {tuple(kernel.shape)} has an output grid {tuple(kernel.shape[:n])}, but "
            f"the input {tuple(x.shape)} with window {window} gives {out_sp}"
        )
    k = _flatten_kernel(kernel, n, n)
    out = jnp.einsum(
        "n...f,...fo->n...o",
        patches,
        k,
        precision=precision,
        preferred_element_type=accumulator(k.dtype),
    )
    return add_bias(out, bias, [(*out_sp, kernel.shape[-1]), (kernel.shape[-1],)])


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
      ``(N, *out_spatial, C_out)``, of the dtype ``conv`` gives (integers: a wide type).

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
    x, kernels = promote(x, kernels)
    x, g = prepare(x, window, strides, padding, dilation, padding_mode, kernels.shape[-1])
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
    out = jnp.einsum(
        f"{spec_p},{spec_k}->{spec_o}",
        patches,
        k,
        precision=precision,
        preferred_element_type=accumulator(k.dtype),
    )
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
    return add_bias(out, bias, [(c_out,), (*tile, c_out)])
