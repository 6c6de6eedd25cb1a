"""Global and adaptive pooling: over all spatial positions, or over PyTorch's adaptive bins.

The max pools route the derivative to one maximum of every bin (the first in row-major
order, or the last NaN), as PyTorch's. Layouts as in ``cnn_jax.ops.pool``.
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

from cnn_jax.ops._pool_common import accumulator, as_float, check_spatial_not_empty, jit, lowest
from cnn_jax.ops._validate import as_tuple, spatial_rank
from cnn_jax.ops.geometry import check_bool
from cnn_jax.ops.limits import check_output

__all__ = [
    "adaptive_avg_pool",
    "adaptive_bins",
    "adaptive_max_pool",
    "global_avg_pool",
    "global_max_pool",
]

Array = Any


def global_avg_pool(x: Array, keepdims: bool = False) -> Array:
    """Mean over all spatial dimensions (Lin et al., "Network in Network", 2013).

    Args:
      x: input of shape ``(N, *spatial, C)``; integer inputs become the default float.
      keepdims: keep the spatial dimensions with size 1.

    Returns:
      ``(N, C)``, or ``(N, 1, ..., 1, C)`` with ``keepdims``.

    Raises:
      TypeError, ValueError: for a wrong type or rank, an empty spatial dimension, or a
        non-bool ``keepdims``.
    """
    n = spatial_rank(x)
    keepdims = check_bool(keepdims, "keepdims")
    check_spatial_not_empty(x)
    x = as_float(x)
    axes = tuple(range(1, n + 1))
    return jnp.mean(x, axis=axes, keepdims=keepdims, dtype=accumulator(x.dtype)).astype(x.dtype)


def global_max_pool(x: Array, keepdims: bool = False) -> Array:
    """Maximum over all spatial dimensions.

    Args:
      x: input of shape ``(N, *spatial, C)``.
      keepdims: keep the spatial dimensions with size 1.

    Returns:
      ``(N, C)``, or ``(N, 1, ..., 1, C)`` with ``keepdims``. The gradient goes to the
      first maximum in row-major order, as PyTorch's (and ``max_pool``'s).

    Raises:
      TypeError, ValueError: for a wrong type or rank, a complex dtype, an empty
        spatial dimension, or a non-bool ``keepdims``.
    """
    n = spatial_rank(x)
    keepdims = check_bool(keepdims, "keepdims")
    check_spatial_not_empty(x)
    x = jnp.asarray(x)
    lowest(x.dtype)  # dtype check
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:-1]), x.shape[-1])
    out = _global_max(flat)
    return out.reshape(x.shape[0], *(1,) * n, x.shape[-1]) if keepdims else out


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _first_max(y: Array, axis: int) -> Array:
    """``jnp.max`` over ``axis``, its derivative going to one maximum only, as PyTorch's.

    That is the first maximum, or the last NaN where there is one (PyTorch's scan keeps
    ``val > max or isnan(val)``); ``jnp.max``'s own derivative splits it among ties.
    The cell is found with two reductions (no ``argmax``, several times slower on
    XLA:CPU).
    """
    return jnp.max(y, axis=axis)


@_first_max.defjvp
def _first_max_jvp(axis: int, primals: tuple[Array], tangents: tuple[Array]):
    (y,), (t,) = primals, tangents
    m = jnp.max(y, axis=axis, keepdims=True)
    iota = lax.broadcasted_iota(jnp.int32, y.shape, axis % y.ndim)
    idx = jnp.min(jnp.where(y == m, iota, y.shape[axis]), axis=axis, keepdims=True)
    if jnp.issubdtype(y.dtype, jnp.inexact):
        last_nan = jnp.max(jnp.where(jnp.isnan(y), iota, -1), axis=axis, keepdims=True)
        idx = jnp.where(last_nan >= 0, last_nan, idx)
    tangent = jnp.sum(jnp.where(iota == idx, t, jnp.zeros_like(t)), axis=axis)
    return jnp.squeeze(m, axis), tangent


@jit()
def _global_max(flat: Array) -> Array:
    """``_first_max`` over axis 1, compiled once per shape (eager calls reuse the trace)."""
    return _first_max(flat, 1)


def adaptive_bins(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive-pooling bins: ``[floor(i in / out), ceil((i + 1) in / out))``.

    Args:
      in_size: the input size.
      out_size: the number of bins.

    Returns:
      ``(starts, ends)``, two int arrays of length ``out_size``.
    """
    i = np.arange(out_size)
    starts = (i * in_size) // out_size
    ends = -((-(i + 1) * in_size) // out_size)
    return starts, ends


def _adaptive_shape(x: Array, output_size: Any) -> tuple[int, tuple[int, ...]]:
    n = spatial_rank(x)
    spatial = tuple(int(v) for v in x.shape[1:-1])
    if isinstance(output_size, Sequence) and not isinstance(output_size, str):
        if len(output_size) != n:
            raise ValueError(
                f"`output_size` (={tuple(output_size)!r}) must have one entry per spatial "
                f"dimension (={n}), or be a single int"
            )
        sizes = tuple(spatial[t] if v is None else v for t, v in enumerate(output_size))
    else:
        sizes = output_size
    out = as_tuple(sizes, n, "output_size")
    check_spatial_not_empty(x)
    check_output(x.shape[0], out, x.shape[-1], f"`output_size` (={output_size!r})")
    return n, out


@jit("out_shape", "kind")
def _adaptive(x: Array, out_shape: tuple[int, ...], kind: str) -> Array:
    """Separable adaptive pooling: one gather + masked reduction per spatial dimension.

    The bins of every output cell are a product of per-dimension bins, so the mean
    (max) over a cell's bin is the mean (max) over one dimension of the mean (max) over
    the others. The max takes the last dimension first, each time the first maximum
    (``_first_max``): the derivative then goes to the bin's first maximum in row-major
    order, PyTorch's cell; padded-out slots come after the bin's cells and never win.
    """
    dims = list(enumerate(out_shape))
    for dim, out in reversed(dims) if kind == "max" else dims:
        axis = dim + 1
        size = x.shape[axis]
        if size == out:
            continue
        if size % out == 0:  # equal, disjoint bins: a reshape
            k = size // out
            y = x.reshape(*x.shape[:axis], out, k, *x.shape[axis + 1 :])
            x = jnp.mean(y, axis=axis + 1) if kind == "avg" else _first_max(y, axis + 1)
            continue
        starts, ends = adaptive_bins(size, out)
        length = int((ends - starts).max())
        pos = starts[:, None] + np.arange(length)[None, :]  # (out, length)
        valid = pos < ends[:, None]
        y = jnp.take(x, np.minimum(pos, size - 1).reshape(-1), axis=axis)
        y = y.reshape(*x.shape[:axis], out, length, *x.shape[axis + 1 :])
        mask = valid.reshape((out, length) + (1,) * (x.ndim - axis - 1))
        if kind == "avg":
            counts = (ends - starts).astype(np.float64)
            counts = counts.reshape((out,) + (1,) * (x.ndim - axis - 1))
            total = jnp.sum(jnp.where(mask, y, 0), axis=axis + 1)
            x = total / counts.astype(total.dtype)
        else:
            x = _first_max(jnp.where(mask, y, lowest(y.dtype)), axis + 1)
    return x


def adaptive_avg_pool(x: Array, output_size: int | Sequence[int | None]) -> Array:
    """Average over PyTorch's adaptive bins, so that the output has ``output_size``.

    Output cell ``i`` of a dimension averages the input cells
    ``[floor(i * in / out), ceil((i + 1) * in / out))`` (``adaptive_bins``), as
    ``torch.nn.functional.adaptive_avg_pool{1,2,3}d``; ``out`` may exceed ``in``.

    Args:
      x: input of shape ``(N, *spatial, C)``; integer inputs become the default float.
      output_size: an int, or one int (or ``None``, keeping the input size) per spatial
        dimension.

    Returns:
      An array ``(N, *output_size, C)`` of a floating dtype.

    Raises:
      TypeError, ValueError: for a wrong rank or type, a non-positive or wrongly long
        ``output_size``, one beyond ``cnn_jax.ops.limits``, or an empty spatial
        dimension.
    """
    _, out = _adaptive_shape(x, output_size)
    x = as_float(x)
    return _adaptive(x.astype(accumulator(x.dtype)), out_shape=out, kind="avg").astype(x.dtype)


def adaptive_max_pool(x: Array, output_size: int | Sequence[int | None]) -> Array:
    """Maximum over PyTorch's adaptive bins (see ``adaptive_avg_pool``).

    Args:
      x: input of shape ``(N, *spatial, C)``.
      output_size: an int, or one int (or ``None``, keeping the input size) per spatial
        dimension.

    Returns:
      An array ``(N, *output_size, C)`` of the dtype of ``x``.

    Raises:
      TypeError, ValueError: as ``adaptive_avg_pool``.
    """
    _, out = _adaptive_shape(x, output_size)
    x = jnp.asarray(x)
    lowest(x.dtype)  # dtype check
    return _adaptive(x, out_shape=out, kind="max")
