"""Max pooling that returns where every maximum is, and its partial inverse ``max_unpool``.

The indices are PyTorch's (``return_indices=True``): flat row-major indices over the
spatial dimensions of the unpadded input, the first maximum of every window in window
order, a NaN winning (the last one among NaNs). Layouts as in ``cnn_jax.ops.pool``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops._pool_common import check_windows_see_input, crop, jit, lowest
from cnn_jax.ops._validate import as_tuple, check_array_rank, spatial_rank
from cnn_jax.ops.geometry import Geometry, pool_geometry
from cnn_jax.ops.limits import check_output
from cnn_jax.ops.padding import PaddingLike

__all__ = ["gather_max", "max_indices", "max_pool_with_indices", "max_unpool"]

Array = Any
IntOrSeq = int | Sequence[int]


@jit("g")
def max_indices(x: Array, g: Geometry) -> tuple[Array, Array]:
    """Every window's maximum and its flat spatial index, ``(N, *out_shape, C)`` each.

    PyTorch's rule: the first maximum in window order (the smallest flat index), except
    that a NaN wins and, among NaNs, the last one (PyTorch's CPU kernels keep the last
    NaN they meet). The maximum ``m`` comes from ``lax.reduce_window``; then one pass
    over the ``prod(window)`` taps (strided slices of the padded input, which XLA fuses)
    finds the position of the first tap in the input equal to ``m``. The maxima are
    returned as computed (no gradient).
    """
    size = math.prod(g.spatial)
    if size > np.iinfo(np.int32).max:
        raise ValueError(f"`x` has {size} spatial positions, more than int32 indices can hold")
    x = lax.stop_gradient(x)
    low = lowest(x.dtype)
    m = lax.reduce_window(x, low, lax.max, **g.lax_args())
    m = crop(m, g)
    xp = jnp.pad(x, ((0, 0), *g.full_padding, (0, 0)), constant_values=low)
    taps = [g.taps(dim) for dim in range(g.n)]  # (out_d, window_d) positions
    row_major = [math.prod(g.spatial[dim + 1 :]) for dim in range(g.n)]
    # Every window holds an input cell (checked), so some tap matches. Among equal
    # maxima the first tap wins: the taps are visited last to first, each overwriting.
    # A NaN maximum equals nothing; then the last NaN wins, the NaN of largest flat
    # position (positions increase with the tap order).
    is_float = jnp.issubdtype(x.dtype, jnp.inexact)
    first_max = jnp.zeros(m.shape, jnp.int32)
    last_nan = jnp.full(m.shape, -1, jnp.int32)
    for offsets in reversed(list(np.ndindex(*g.window))):
        start = tuple(j * d for j, d in zip(offsets, g.dilation, strict=True))
        limit = tuple(
            st + (o - 1) * s + 1 for st, o, s in zip(start, g.out_shape, g.strides, strict=True)
        )
        v = lax.slice(xp, (0, *start, 0), (x.shape[0], *limit, x.shape[-1]), (1, *g.strides, 1))
        pos = np.zeros(g.out_shape, np.int64)
        valid = np.ones(g.out_shape, bool)
        for dim in range(g.n):
            p = taps[dim][:, offsets[dim]]
            shape = [1] * g.n
            shape[dim] = -1
            pos = pos + (p * row_major[dim]).reshape(shape)
            valid = valid & ((p >= 0) & (p < g.spatial[dim])).reshape(shape)
        pos_k = pos.astype(np.int32)[None, ..., None]
        eq = v == m
        if not valid.all():  # padding equals m only if m is the lowest value
            eq = eq & valid[None, ..., None]
        first_max = jnp.where(eq, pos_k, first_max)
        if is_float:
            nan = jnp.isnan(v)
            if not valid.all():
                nan = nan & valid[None, ..., None]
            last_nan = jnp.maximum(last_nan, jnp.where(nan, pos_k, -1))
    idx = jnp.where(jnp.isnan(m), last_nan, first_max) if is_float else first_max
    return m, idx


@jax.jit
def gather_max(x: Array, indices: Array) -> Array:
    """``x`` at the flat spatial ``indices`` of every (sample, channel): differentiable."""
    n, c = x.shape[0], x.shape[-1]
    flat = x.reshape(n, math.prod(x.shape[1:-1]), c)  # explicit sizes: n or c may be 0
    idx = indices.reshape(n, math.prod(indices.shape[1:-1]), c)
    vals = jnp.take_along_axis(flat, idx, axis=1, mode="clip")
    return vals.reshape(indices.shape)


def max_pool_with_indices(
    x: Array,
    window: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: PaddingLike = "VALID",
    *,
    ceil_mode: bool = False,
    dilation: IntOrSeq = 1,
) -> tuple[Array, Array]:
    """Max pooling that also returns where every maximum is, as PyTorch's ``return_indices``.

    ``indices[n, o, c]`` is the flat index over the spatial dimensions of the
    *unpadded* input (row-major, so ``h * W + w`` in 2-D) of the maximum of the window,
    for every sample and channel, as ``torch.nn.functional.max_pool2d(...,
    return_indices=True)`` (which is NCHW but indexes the same way). Ties go to the
    first maximum in window order (the smallest index); a NaN wins, and among NaNs the
    last one, as in PyTorch's CPU kernels. The maxima come from ``lax.reduce_window``
    and the indices from one fused pass over the window's taps; the values are then
    gathered at the indices, so the gradient goes exactly to the returned indices.

    Args:
      x: input of shape ``(N, *spatial, C)``.
      window: window size, an int or one per spatial dimension.
      strides: the strides; defaults to ``window``.
      padding: any padding of ``cnn_jax.ops.padding``.
      ceil_mode: compute the output size with ``ceil`` instead of ``floor`` (PyTorch).
      dilation: spacing of the window's taps, an int or one per spatial dimension.

    Returns:
      ``(values, indices)``, both of shape ``(N, *out_spatial, C)``; ``values`` has the
      dtype of ``x`` and ``indices`` is int32.

    Raises:
      TypeError: for arguments of the wrong type.
      ValueError: as ``max_pool``.
    """
    g = pool_geometry(x, window, strides, padding, dilation, ceil_mode)
    check_windows_see_input(g, padding)
    x = jnp.asarray(x)
    lowest(x.dtype)  # dtype check
    return _max_pool_with_indices(x, g=g)


@jit("g")
def _max_pool_with_indices(x: Array, g: Geometry) -> tuple[Array, Array]:
    _, indices = max_indices(x, g=g)
    return gather_max(x, indices), indices


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def max_unpool(values: Array, indices: Array, output_shape: IntOrSeq) -> Array:
    """Partial inverse of ``max_pool_with_indices``: scatters values back to their indices.

    ``out[n, indices[n, o, c], c] = values[n, o, c]`` over the flattened spatial
    dimensions of ``output_shape``, zeros elsewhere, as ``torch.nn.functional.
    max_unpool{1,2,3}d``. If two windows picked the same cell (overlapping windows) the
    cell gets that (identical) value once, and so does its gradient: the gradient of
    ``values`` is the output's gradient at the index for one of the duplicates and 0
    for the others, so that ``max_unpool(*max_pool_with_indices(x, ...))`` has the
    true gradient with respect to ``x`` (PyTorch gives every duplicate the gradient,
    which counts it several times).

    Args:
      values: pooled values, ``(N, *pooled_spatial, C)``.
      indices: int array of the same shape: flat indices into ``output_shape``.
      output_shape: the spatial shape of the output, an int or one per spatial
        dimension (the spatial shape of the input that was pooled).

    Returns:
      An array ``(N, *output_shape, C)`` of the dtype of ``values``.

    Raises:
      TypeError: if ``indices`` is not an integer array or ``output_shape`` not ints.
      ValueError: for mismatched shapes, a wrong ``output_shape`` length, an
        ``output_shape`` beyond ``cnn_jax.ops.limits``, or, when
        ``indices`` is concrete (not traced by ``jit``), an index out of
        ``[0, prod(output_shape))``; traced out-of-range indices are dropped.
    """
    n = spatial_rank(values, "values")
    check_array_rank(indices, "indices", values.ndim, "(N, *pooled_spatial, C) like `values`")
    if tuple(indices.shape) != tuple(values.shape):
        raise ValueError(
            f"`indices` shape {tuple(indices.shape)} must equal `values` shape "
            f"{tuple(values.shape)}"
        )
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"`indices` must have an integer dtype, got {indices.dtype}")
    out_shape = as_tuple(output_shape, n, "output_shape")
    culprit = f"`output_shape` (={output_shape!r})"
    check_output(values.shape[0], out_shape, values.shape[-1], culprit)
    size = math.prod(out_shape)
    if _is_concrete(indices) and indices.size:
        idx_np = np.asarray(indices)
        lo, hi = int(idx_np.min()), int(idx_np.max())
        if lo < 0 or hi >= size:
            raise ValueError(
                f"`indices` must lie in [0, {size}) for `output_shape` (={output_shape!r}), "
                f"got values in [{lo}, {hi}]"
            )
    return _max_unpool(jnp.asarray(values), jnp.asarray(indices), out_shape=out_shape)


@jit("out_shape")
def _max_unpool(values: Array, indices: Array, out_shape: tuple[int, ...]) -> Array:
    batch, chans = values.shape[0], values.shape[-1]
    size = math.prod(out_shape)
    cells = math.prod(values.shape[1:-1])  # explicit sizes: batch or chans may be 0
    idx = indices.reshape(batch, cells, chans)
    b = jnp.arange(batch).reshape(batch, 1, 1)
    c = jnp.arange(chans).reshape(1, 1, chans)
    out = jnp.zeros((batch, size, chans), values.dtype)
    out = out.at[b, idx, c].set(
        values.reshape(batch, cells, chans), mode="drop", wrap_negative_indices=False
    )
    return out.reshape(batch, *out_shape, chans)
