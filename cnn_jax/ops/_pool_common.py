"""Helpers shared by the pooling ops: dtypes, window sums and patches, the jit wrapper."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops.geometry import Geometry
from cnn_jax.ops.padding import PaddingLike

__all__ = [
    "accumulator",
    "as_float",
    "check_spatial_not_empty",
    "check_windows_see_input",
    "crop",
    "jit",
    "lowest",
    "patches",
    "window_sum",
]

Array = Any


def jit(*static: str) -> Any:
    """``jax.jit`` with the named arguments static.

    Every public op checks its arguments in Python, then runs one compiled core per
    geometry: fast when called eagerly, inlined under an outer ``jit``.
    """
    return functools.partial(jax.jit, static_argnames=static)


def crop(y: Array, g: Geometry) -> Array:
    """Crops a ``reduce_window`` result to ``g.out_shape``.

    Only has an effect in the corner case where ``ceil_mode`` drops a window that the
    floor rule keeps (a high padding of at least the window, as PyTorch forbids).
    """
    if tuple(y.shape[1:-1]) == g.out_shape:
        return y
    return y[(slice(None), *(slice(0, o) for o in g.out_shape), slice(None))]


def check_windows_see_input(g: Geometry, padding: PaddingLike) -> None:
    """Raises if some window covers only padding (its max would be the padding value)."""
    for dim in range(g.n):
        taps = g.taps(dim)
        inside = ((taps >= 0) & (taps < g.spatial[dim])).any(axis=1)
        if not inside.all():
            first = int(np.argmin(inside))
            raise ValueError(
                f"`padding` (={padding!r}) is so large that window {first} of spatial "
                f"dimension {dim} covers only padding (input size {g.spatial[dim]}, window "
                f"{g.window[dim]}, stride {g.strides[dim]}, dilation {g.dilation[dim]}, "
                f"padding {g.padding[dim]}); a max pool needs at least one input cell per "
                "window"
            )


def lowest(dtype: Any) -> Any:
    """The identity of ``max`` in ``dtype``: -inf, the smallest int, or False."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"`x` has complex dtype {dtype}; max pooling needs real values")
    if jnp.issubdtype(dtype, jnp.inexact):
        return np.array(-np.inf, dtype)
    if jnp.issubdtype(dtype, jnp.integer):
        return np.array(np.iinfo(dtype).min, dtype)
    if dtype == jnp.bool_:
        return np.array(False)
    raise TypeError(f"`x` has dtype {dtype}, which max pooling does not support")


def as_float(x: Array) -> Array:
    """``x`` as an array of a floating dtype (ints and bools become the default float)."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"`x` has complex dtype {x.dtype}; pooling needs real values")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def accumulator(dtype: Any) -> Any:
    """Sums of float16/bfloat16 are accumulated in float32."""
    return jnp.promote_types(dtype, jnp.float32)


def window_sum(x: Array, g: Geometry) -> Array:
    """Sum over every window with zero padding (explicit and overhang), in ``x.dtype``."""
    y = lax.reduce_window(x, np.array(0, x.dtype), lax.add, **g.lax_args())
    return crop(y, g)


def patches(x: Array, g: Geometry, pad_value: Any) -> Array:
    """Every window's cells: ``(N, *out_shape, C, prod(window))``, taps in window order.

    Built from ``prod(window)`` strided slices of the padded input (padded with
    ``pad_value``, overhang included), so it is differentiable and exact.
    """
    x = jnp.pad(
        x, ((0, 0), *g.full_padding, (0, 0)), constant_values=np.asarray(pad_value, x.dtype)
    )
    taps = []
    for offsets in np.ndindex(*g.window):
        start = (0, *(j * d for j, d in zip(offsets, g.dilation, strict=True)), 0)
        limit = (
            x.shape[0],
            *(
                st + (o - 1) * s + 1
                for st, o, s in zip(start[1:-1], g.out_shape, g.strides, strict=True)
            ),
            x.shape[-1],
        )
        taps.append(lax.slice(x, start, limit, (1, *g.strides, 1)))
    return jnp.stack(taps, axis=-1)


def check_spatial_not_empty(x: Array) -> None:
    if any(v == 0 for v in x.shape[1:-1]):
        raise ValueError(f"`x` (shape {tuple(x.shape)}) has an empty spatial dimension")
