"""Parts shared by the convolutions' fast paths: products, ``lax``'s convolution, tap sums.

Every fast convolution is bilinear in its input and kernel: ``def_bilinear_jvp`` gives
it the tangent ``f(t_x, w) + f(x, t_w)`` with each part computed by a formulation whose
transpose (reverse mode) is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from cnn_jax.ops._conv_common import accumulator
from cnn_jax.ops.geometry import (
    Geometry,
    conv_out_shape,
    dimension_numbers,
    tap_slice,
    taps,
    zero_pad,
)

__all__ = ["def_bilinear_jvp", "dot", "im2col", "lax_conv", "sum_over_taps", "tangent_input"]

Array = Any


def dot(a: Array, b: Array, precision: Any) -> Array:
    """``a @ b`` for 2-D operands."""
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), precision=precision)


def lax_conv(x: Array, w: Array, g: Geometry) -> Array:
    """``lax.conv_general_dilated`` over channels-last arrays with the geometry ``g``.

    Integers add up in, and return, ``cnn_jax.ops._conv_common.accumulator``'s wide type.
    """
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=g.strides,
        padding=g.padding,
        rhs_dilation=g.dilation,
        dimension_numbers=dimension_numbers(x.ndim - 2),
        feature_group_count=g.groups,
        precision=g.precision,
        preferred_element_type=accumulator(x.dtype),
    )


def im2col(x: Array, window: Sequence[int], out: Sequence[int], g: Geometry) -> Array:
    """``(N, *out, T * C)`` patches of the zero-padded ``x``, features ordered (tap, C)."""
    xp = zero_pad(x, g)
    cols = [tap_slice(xp, t, out, g.strides, g.dilation) for t in taps(window)]
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def tangent_input(tx: Array, w: Array, g: Geometry) -> Array:
    """``conv(tx, w)``: ``lax`` at stride 1; im2col when strided (transpose: col2im)."""
    if all(s == 1 for s in g.strides) or g.groups != 1:
        return lax_conv(tx, w, g)
    n = tx.ndim - 2
    window, (ci, co) = w.shape[:n], w.shape[n:]
    out = conv_out_shape(tx.shape[1:-1], window, g)
    m = tx.shape[0] * math.prod(out)
    t = math.prod(window)
    cols = im2col(tx, window, out, g).reshape(m, t * ci)
    return dot(cols, w.reshape(t * ci, co), g.precision).reshape(tx.shape[0], *out, co)


def _bilinear_tangent(
    out: Array,
    t_a: Any,
    t_b: Any,
    along_a: Callable[[Array], Array],
    along_b: Callable[[Array], Array],
) -> Array:
    """The tangent of ``out = f(a, b)``, linear in each argument: ``f(t_a, b) + f(a, t_b)``.

    ``along_a(t_a)`` and ``along_b(t_b)`` compute the two parts; a part whose tangent is a
    ``SymbolicZero`` is skipped, so reverse mode transposes only what is needed.
    """
    parts = [f(t) for t, f in ((t_a, along_a), (t_b, along_b)) if not isinstance(t, SymbolicZero)]
    if not parts:
        return jnp.zeros_like(out)
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def def_bilinear_jvp(
    prim: Any,
    along_a: Callable[[Array, Array, Any], Array],
    along_b: Callable[[Array, Array, Any], Array],
) -> None:
    """Gives ``prim(a, b, g)`` (a ``custom_jvp``, bilinear in ``a`` and ``b``) its tangent.

    The tangent is ``along_a(t_a, b, g) + along_b(a, t_b, g)``, the part of a symbolically
    zero tangent skipped.

    Args:
      prim: a ``jax.custom_jvp`` with ``nondiff_argnums=(2,)``.
      along_a: computes ``prim(t_a, b, g)``.
      along_b: computes ``prim(a, t_b, g)``.
    """

    def jvp(g: Any, primals: tuple[Array, Array], tangents: tuple[Any, Any]):
        a, b = primals
        t_a, t_b = tangents
        out = prim(a, b, g)
        return out, _bilinear_tangent(
            out, t_a, t_b, lambda t: along_a(t, b, g), lambda t: along_b(a, t, g)
        )

    prim.defjvp(jvp, symbolic_zeros=True)


def sum_over_taps(
    x: Array, window: Sequence[int], g: Geometry, term: Callable[[Array, Any], Array]
) -> Array:
    """``sum over taps t of term(x's inputs at tap t, t)``, in float32 or wider.

    The loop of the depthwise and the few-input-channel forward passes: one fused loop
    over shifted slices of the zero-padded input, no convolution.

    Args:
      x: the input ``(N, *spatial, C)``.
      window: the kernel's spatial size.
      g: the convolution's geometry.
      term: ``term(slice, tap)`` for the strided slice of the inputs at one tap.

    Returns:
      The sum, ``(N, *out, ...)``.
    """
    out = conv_out_shape(x.shape[1:-1], window, g)
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    xp = zero_pad(x, g)
    y = None
    for t in taps(window):
        p = term(tap_slice(xp, t, out, g.strides, g.dilation).astype(acc_dtype), t)
        y = p if y is None else y + p
    return y
