"""Transposed convolutions with a cheaper kernel derivative, and as one product where they tile.

* ``'conv_transpose'`` (groups 1): the forward pass is the ``lax`` zero-dilated
  convolution (Dumoulin & Visin 2016, §4); the kernel tangent is written as col2im, so
  that the kernel gradient is one product per tap.
* ``'conv_transpose_tiles'`` (groups 1, kernel equal to the stride, no dilation, no
  padding: a U-Net's 2x2/2 up-sampling): every output cell gets exactly one tap, so the
  layer is one product ``y @ kernel`` followed by a reshape that puts the taps side by
  side (depth to space, the "pixel shuffle" of Shi et al. 2016), where the zero-dilated
  convolution multiplies ``prod(stride) - 1`` zeros for every useful product. Plain
  differentiable code: its derivatives are products too.

The geometry (``cnn_jax.ops.geometry.Geometry``) holds the ``lax`` call's
padding in ``padding`` and the forward convolution's low padding in ``fwd_low``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops._conv_common import accumulator
from cnn_jax.ops._conv_parts import def_bilinear_jvp, dot
from cnn_jax.ops.fast_paths import enabled_fast_paths
from cnn_jax.ops.fusion import keep_input, unfused_conv
from cnn_jax.ops.geometry import Geometry, dimension_numbers, taps

__all__ = ["conv_transpose", "tiles_output", "transpose_kernel"]

Array = Any


def transpose_kernel(kernel: Array, groups: int = 1) -> Array:
    """The kernel of the transposed convolution: spatially flipped, ``I``/``O`` swapped.

    Args:
      kernel: a forward kernel ``(*window, C_in / groups, C_out)``.
      groups: the forward convolution's groups.

    Returns:
      A kernel ``(*window, C_out / groups, C_in)`` for ``lax`` such that a convolution
      of the zero-dilated output with it is the adjoint of the forward convolution.
    """
    n = kernel.ndim - 2
    *window, ci_g, c_out = kernel.shape
    co_g = c_out // groups
    k = kernel.reshape(*window, ci_g, groups, co_g)
    k = jnp.moveaxis(k, (n, n + 1, n + 2), (n + 2, n + 1, n))  # -> (*w, co_g, groups, ci_g)
    k = k.reshape(*window, co_g, groups * ci_g)
    return jnp.flip(k, axis=tuple(range(n)))


def _lax_conv_transpose(y: Array, k: Array, g: Geometry) -> Array:
    """The zero-dilated ``lax`` convolution (Dumoulin & Visin 2016, §4), any groups."""
    n = y.ndim - 2
    return lax.conv_general_dilated(
        y,
        transpose_kernel(k, g.groups),
        window_strides=(1,) * n,
        padding=g.padding,
        lhs_dilation=g.strides,
        rhs_dilation=g.dilation,
        dimension_numbers=dimension_numbers(n),
        feature_group_count=g.groups,
        precision=g.precision,
        preferred_element_type=accumulator(y.dtype),  # integers: the wide type
    )


def _transpose_out_shape(y_shape: Sequence[int], window: Sequence[int], g: Geometry):
    return tuple(
        (i - 1) * s + 1 + lo + hi - (d * (k - 1) + 1) + 1
        for i, k, s, d, (lo, hi) in zip(y_shape, window, g.strides, g.dilation, g.padding)
    )


def _col2im_kernel_tangent(y: Array, tk: Array, g: Geometry) -> Array:
    """``conv_transpose(y, tk)`` as ``y @ tkᵀ`` placed at every tap with strided pads.

    Transposed (reverse mode), this is one product per tap of the strided slices of
    the cotangent with ``y``: the kernel gradient of the forward convolution.
    """
    n = y.ndim - 2
    window, (ci, co) = tk.shape[:n], tk.shape[n:]
    in_sp = y.shape[1:-1]
    out = _transpose_out_shape(in_sp, window, g)
    window_taps = taps(window)
    m = y.shape[0] * math.prod(in_sp)
    z = dot(y.reshape(m, co), tk.reshape(len(window_taps) * ci, co).T, g.precision)
    z = z.reshape(y.shape[0], *in_sp, len(window_taps), ci)
    res = None
    for j, t in enumerate(window_taps):
        cfg = [(0, 0, 0)]
        for tt, i, s, d, lo, o in zip(t, in_sp, g.strides, g.dilation, g.fwd_low, out):
            low = tt * d - lo
            cfg.append((low, o - (low + (i - 1) * s + 1), s - 1))
        cfg.append((0, 0, 0))
        p = lax.pad(z[..., j, :], np.array(0, z.dtype), cfg)
        res = p if res is None else res + p
    return res


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv_transpose(y: Array, k: Array, g: Geometry) -> Array:
    return _lax_conv_transpose(y, k, g)


def_bilinear_jvp(_conv_transpose, _lax_conv_transpose, _col2im_kernel_tangent)


def tiles_output(window: Sequence[int], g: Geometry) -> bool:
    """Whether every output cell of this transposed convolution gets exactly one tap.

    True when the kernel equals the stride, undilated, with no padding (the ``lax``
    padding is then ``k - 1`` on both sides; a high padding cancelled by as much output
    padding counts too).

    Args:
      window: the kernel's spatial size.
      g: the transposed convolution's geometry.

    Returns:
      Whether ``_tiled_conv_transpose`` computes this convolution (with groups 1).
    """
    return all(
        k == s and d == 1 and low == 0 and pad == (k - 1, k - 1)
        for k, s, d, low, pad in zip(
            window, g.strides, g.dilation, g.fwd_low, g.padding, strict=True
        )
    )


def _tiled_conv_transpose(y: Array, k: Array, g: Geometry) -> Array:
    """``out[n, s*i + a, c] = sum_o y[n, i, o] k[a, c, o]``: one product and a reshape."""
    n = y.ndim - 2
    window, (ci, co) = k.shape[:n], k.shape[n:]
    spatial = y.shape[1:-1]
    n_taps = math.prod(window)
    kernel = jnp.moveaxis(k, -1, 0).reshape(co, n_taps * ci)  # (C_out, taps x C_in)
    z = dot(y.reshape(-1, co), kernel, g.precision)
    z = z.reshape(y.shape[0], *spatial, *window, ci)
    # (N, i_1, ..., i_n, a_1, ..., a_n, C) -> (N, i_1, a_1, ..., i_n, a_n, C)
    order = [0] + [ax for d in range(n) for ax in (1 + d, 1 + n + d)] + [1 + 2 * n]
    out = tuple(i * w for i, w in zip(spatial, window, strict=True))
    return z.transpose(order).reshape(y.shape[0], *out, ci)


def _dispatch(y: Array, k: Array, g: Geometry, enabled: frozenset[str]) -> Array:
    """The transposed convolution by the fast paths ``enabled`` (see ``conv_transpose``)."""
    if not jnp.issubdtype(y.dtype, jnp.inexact):
        return _lax_conv_transpose(y, k, g)  # integers: sums in the wide type
    y = keep_input(y)
    if g.groups != 1:
        enabled = frozenset()
    if "conv_transpose_tiles" in enabled and tiles_output(k.shape[: y.ndim - 2], g):
        return _tiled_conv_transpose(y, k, g)
    fast_grad = "conv_transpose" in enabled
    out = _conv_transpose(y, k, g) if fast_grad else _lax_conv_transpose(y, k, g)
    return unfused_conv(out, y.shape, k.shape[: y.ndim - 2], any(s > 1 for s in g.strides))


_dispatch_jit = jax.jit(_dispatch, static_argnums=(2, 3))


def conv_transpose(y: Array, k: Array, g: Geometry) -> Array:
    """Transposed convolution: one product where it tiles its output, else ``lax``'s.

    The input is kept in memory for the derivatives (``'materialize'``). With groups 1:
    under ``'conv_transpose_tiles'`` and a kernel equal to the stride (``tiles_output``),
    one product and a reshape; else the ``lax`` zero-dilated convolution, with the fast
    kernel derivative under ``'conv_transpose'``. With more groups, or integer arrays,
    the ``lax`` convolution. Traced once per geometry, shapes and set of enabled fast
    paths (``jax.jit``).

    Args:
      y: ``(N, *spatial, C_out)``.
      k: the forward kernel ``(*window, C_in / groups, C_out)``.
      g: the geometry (``TransposeGeometry``).

    Returns:
      ``(N, *spatial', C_in)``.
    """
    enabled = enabled_fast_paths()
    try:
        hash(g)
    except TypeError:  # an unhashable precision: traced in place
        return _dispatch(y, k, g, enabled)
    return _dispatch_jit(y, k, g, enabled)
