"""Dense and grouped convolutions with cheaper derivatives, and the convolution dispatcher.

The forward pass is ``lax.conv_general_dilated``; the derivative is a ``jax.custom_jvp``
whose tangent is written so that its *transpose* (what reverse mode runs) is fast
(fast paths ``'conv'`` for ``groups == 1`` and ``'grouped'``):

* the kernel tangent is a sum over the window's taps of ``dot(shifted x, kernel tap)``,
  whose transpose is one matrix product ``shifted xᵀ @ dy`` per tap: the im2col kernel
  gradient (Chellapilla, Puri & Simard 2006, "High performance convolutional neural
  networks for document processing") without building the patch matrix (with it, one
  product, for fewer than ``PATCHES_BELOW_CHANNELS`` input channels; batched over the
  groups of a grouped convolution). XLA's own kernel gradient is kept where it is
  faster (small images with few channels: ``kernel_grad_by_products``);
* the input tangent of a strided convolution is an im2col product, whose transpose is
  ``dy @ Wᵀ`` scattered back with strided pads (col2im) instead of a zero-dilated
  (``lhs_dilation``) convolution; at stride 1 it is ``lax``'s.

``conv`` picks among these, the depthwise (``cnn_jax.ops.depthwise_fast``), the
few-input-channel (``cnn_jax.ops.small_input_fast``) and, in loop bodies, the loop-safe
(``cnn_jax.ops.loop_conv``) formulations and ``lax``, by the
fast paths in effect (``cnn_jax.ops.fast_paths``). It runs as one ``jax.jit`` per
geometry and set of fast paths, so that eager calls reuse the compiled program.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops._conv_parts import def_bilinear_jvp, dot, im2col, lax_conv, tangent_input
from cnn_jax.ops.depthwise_fast import depthwise_conv
from cnn_jax.ops.fast_paths import enabled_fast_paths, in_loop_body
from cnn_jax.ops.fusion import keep_input, unfused_conv
from cnn_jax.ops.geometry import Geometry, conv_out_shape, tap_slice, taps, zero_pad
from cnn_jax.ops.loop_conv import loop_conv
from cnn_jax.ops.small_input_fast import small_input, small_input_conv

__all__ = [
    "PATCHES_BELOW_CHANNELS",
    "TAPS_LARGE_IMAGE",
    "TAPS_MIN_CHANNEL_PRODUCT",
    "conv",
    "kernel_grad_by_products",
]

Array = Any

#: Below this many input channels, the kernel tangent uses one product with the
#: concatenated taps (im2col) instead of one product per tap.
PATCHES_BELOW_CHANNELS = 8
#: ``C_in * C_out`` from which the products beat XLA's kernel-gradient convolution at
#: any spatial size, and ``(C_in * C_out, output positions per example)`` from which
#: they beat it on large images (``benchmarks/train_step_cpu.py``; ``docs/ENGINEERING.md``,
#: "CPU tuning"): XLA's kernel gradient is competitive for small images and few channels.
TAPS_MIN_CHANNEL_PRODUCT = 8192
TAPS_LARGE_IMAGE = (192, 400)


def kernel_grad_by_products(x_shape: Sequence[int], w_shape: Sequence[int], g: Geometry) -> bool:
    """Whether the kernel derivative of a dense convolution uses the per-tap products.

    Args:
      x_shape: the input shape ``(N, *spatial, C_in)``.
      w_shape: the kernel shape ``(*window, C_in, C_out)``.
      g: the geometry.

    Returns:
      ``True`` for the products of ``_tangent_kernel``, ``False`` for ``lax``'s own
      derivative (a convolution).
    """
    n = len(x_shape) - 2
    window = w_shape[:n]
    if math.prod(window) == 1:
        return True
    channels = w_shape[-2] * w_shape[-1]
    positions = math.prod(conv_out_shape(x_shape[1:-1], window, g))
    if channels >= TAPS_MIN_CHANNEL_PRODUCT:
        return True
    return channels >= TAPS_LARGE_IMAGE[0] and positions >= TAPS_LARGE_IMAGE[1]


def _tangent_kernel(x: Array, tw: Array, g: Geometry) -> Array:
    """``conv(x, tw)`` written so that its transpose in ``tw`` is one product per tap.

    Groups are a batch dimension of the products.
    """
    n = x.ndim - 2
    window, (cig, co) = tw.shape[:n], tw.shape[n:]
    out = conv_out_shape(x.shape[1:-1], window, g)
    groups = g.groups
    cog = co // groups
    m = x.shape[0] * math.prod(out)
    window_taps = taps(window)
    if groups == 1:
        if not kernel_grad_by_products(x.shape, tw.shape, g):
            return lax_conv(x, tw, g)
        if cig < PATCHES_BELOW_CHANNELS or len(window_taps) == 1:
            cols = im2col(x, window, out, g).reshape(m, len(window_taps) * cig)
            y = dot(cols, tw.reshape(len(window_taps) * cig, co), g.precision)
        else:
            xp = zero_pad(x, g)
            y = None
            for t in window_taps:
                s = tap_slice(xp, t, out, g.strides, g.dilation).reshape(m, cig)
                p = dot(s, tw[t], g.precision)
                y = p if y is None else y + p
        return y.reshape(x.shape[0], *out, co)
    # Grouped: (M, T, G, cig) x (T, cig, G, cog) -> contract (T, cig), batch G.
    cols = im2col(x, window, out, g).reshape(m, len(window_taps), groups, cig)
    k = tw.reshape(len(window_taps), cig, groups, cog)
    y = lax.dot_general(cols, k, (((1, 3), (0, 1)), ((2,), (2,))), precision=g.precision)
    # (G, M, cog) -> (M, G * cog)
    return jnp.moveaxis(y, 0, 1).reshape(x.shape[0], *out, co)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv(x: Array, w: Array, g: Geometry) -> Array:
    return lax_conv(x, w, g)


def_bilinear_jvp(_conv, tangent_input, _tangent_kernel)


def _dispatch(x: Array, w: Array, g: Geometry, enabled: frozenset[str]) -> Array:
    """The convolution by the fast paths ``enabled`` (see ``conv``)."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return lax_conv(x, w, g)  # integers: exact sums in the wide type
    c_in = x.shape[-1]
    depthwise = g.groups > 1 and g.groups == c_in and w.shape[-2] == 1
    if depthwise and "depthwise" in enabled:
        # Shifted slices, no layout transposes: the input is best fused, not stored.
        return depthwise_conv(x, w, g)
    x = keep_input(x)
    if g.groups == 1 and "loop_conv" in enabled:  # only inside loop_body (see ``conv``)
        return unfused_conv(loop_conv(x, w, g), x.shape, w.shape[: x.ndim - 2])
    if "small_input" in enabled and small_input(x.shape, w.shape, g):
        return small_input_conv(x, w, g)
    if g.groups == 1:
        out = _conv(x, w, g) if "conv" in enabled else lax_conv(x, w, g)
    elif depthwise:
        out = lax_conv(x, w, g)
    else:
        out = _conv(x, w, g) if "grouped" in enabled else lax_conv(x, w, g)
    return unfused_conv(out, x.shape, w.shape[: x.ndim - 2])


_dispatch_jit = jax.jit(_dispatch, static_argnums=(2, 3))


def conv(x: Array, w: Array, g: Geometry) -> Array:
    """Convolution with the fast derivatives, or ``lax`` where no fast path applies.

    Integer arrays always take ``lax``'s convolution, which adds up in the wide integer
    type (``cnn_jax.ops._conv_common.accumulator``) and returns it. The caller
    (``cnn_jax.ops.conv``) has checked the arguments, promoted the dtypes and applied
    non-zero padding modes.
    The program is traced once per geometry, shapes and set of enabled fast paths
    (``jax.jit``), so eager calls cost what ``lax``'s do. Traced inside
    ``cnn_jax.ops.fast_paths.loop_body`` with ``'loop_conv'`` enabled, a dense
    convolution takes ``cnn_jax.ops.loop_conv`` before any other formulation (reverse
    mode only there).

    Args:
      x: ``(N, *spatial, C_in)``.
      w: ``(*window, C_in / groups, C_out)``.
      g: the geometry (``padding`` as explicit zero-padding pairs).

    Returns:
      ``(N, *out, C_out)``, equal to ``lax.conv_general_dilated`` with the same arguments
      (and, for integers, ``preferred_element_type`` the wide type).
    """
    enabled = enabled_fast_paths()
    if not in_loop_body():
        enabled = enabled - {"loop_conv"}
    try:
        hash(g)
    except TypeError:  # an unhashable precision: traced in place
        return _dispatch(x, w, g, enabled)
    return _dispatch_jit(x, w, g, enabled)
