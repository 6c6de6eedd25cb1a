"""The max-pool tangent of non-overlapping windows as a fused loop (fast path ``'max_pool'``).

For non-overlapping, undilated windows with at least ``MAX_POOL_MIN_CHANNELS`` channels,
the tangent picks, for every window, the tap holding PyTorch's arg-max, from the input
reshaped to ``(N, o_1, k_1, ..., C)``: one fused loop, whose transpose is one fused loop
too, instead of the gather (and scatter) of ``cnn_jax.ops.pool``'s rule. Overlapping
windows keep that rule. Off by default (``cnn_jax.ops.fast_paths.CPU_DEFAULT``).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops.geometry import Geometry

__all__ = ["MAX_POOL_MIN_CHANNELS", "max_pool_fast_applies", "max_pool_tangent"]

Array = Any

#: The max-pool tangent of ``max_pool_tangent`` is used from this many channels on
#: (with fewer, the gather of ``cnn_jax.ops.pool`` was faster).
MAX_POOL_MIN_CHANNELS = 8


def max_pool_fast_applies(g: Geometry, channels: int) -> bool:
    """Whether ``max_pool_tangent`` applies: non-overlapping undilated windows, enough channels."""
    return (
        tuple(g.strides) == tuple(g.window)
        and all(d == 1 for d in g.dilation)
        and channels >= MAX_POOL_MIN_CHANNELS
    )


def max_pool_tangent(x: Array, t: Array, g: Geometry) -> Array:
    """The max-pool tangent for non-overlapping windows: each window's tangent at its arg-max.

    The arg-max is PyTorch's (as ``cnn_jax.ops.max_pool_with_indices``): the first
    maximum in window order among the input cells, or, if the maximum is NaN, the last
    NaN. Here ``x`` and ``t`` are padded and reshaped to ``(N, o_1, k_1, ..., C)``
    (``stride == window``, no dilation), the window's taps are visited in order, and
    ``out = sum_j where(tap j is the arg-max, t at tap j, 0)``: one fused loop, whose
    transpose (reverse mode) is one fused loop too, instead of the scatter that
    transposes a gather at the arg-max indices.

    Args:
      x: the input ``(N, *spatial, C)``.
      t: its tangent.
      g: the pooling geometry (``cnn_jax.ops.geometry.pool_geometry``) for which
        ``max_pool_fast_applies``.

    Returns:
      ``(N, *out, C)``.
    """
    n = g.n
    x = lax.stop_gradient(x)
    extent = tuple(o * k for o, k in zip(g.out_shape, g.window))
    crop = (slice(None), *(slice(0, e) for e in extent), slice(None))
    pads = ((0, 0), *g.full_padding, (0, 0))
    lowest = -np.inf if jnp.issubdtype(x.dtype, jnp.inexact) else np.iinfo(x.dtype).min
    xp = jnp.pad(x, pads, constant_values=np.asarray(lowest, x.dtype))[crop]
    tp = jnp.pad(t, pads)[crop]
    split = [x.shape[0]]
    for o, k in zip(g.out_shape, g.window):
        split += [o, k]
    xv = xp.reshape(*split, x.shape[-1])
    tv = tp.reshape(*split, x.shape[-1])
    m = jnp.max(xv, axis=tuple(2 + 2 * d for d in range(n)))
    is_float = jnp.issubdtype(x.dtype, jnp.inexact)
    taps = [g.taps(dim) for dim in range(n)]  # (out_d, window_d) unpadded positions

    def tap_values(tap: tuple[int, ...]) -> tuple[Array, Array, np.ndarray | None]:
        index: list[Any] = [slice(None)]
        valid = np.ones(g.out_shape, bool)
        for dim in range(n):
            index += [slice(None), tap[dim]]
            p = taps[dim][:, tap[dim]]
            shape = [1] * n
            shape[dim] = -1
            valid = valid & ((p >= 0) & (p < g.spatial[dim])).reshape(shape)
        index.append(slice(None))
        v = None if valid.all() else valid[None, ..., None]
        return xv[tuple(index)], tv[tuple(index)], v

    window_taps = list(np.ndindex(*g.window))
    values = [tap_values(tap) for tap in window_taps]
    # The first tap equal to the maximum (padding taps equal it only if it is the
    # lowest value; they are excluded).
    chosen = []
    taken = None
    for xj, _, valid in values:
        eq = xj == m
        if valid is not None:
            eq = eq & valid
        chosen.append(eq if taken is None else eq & ~taken)
        taken = eq if taken is None else taken | eq
    if is_float:
        # A NaN maximum: the last NaN tap.
        later = None
        m_nan = jnp.isnan(m)
        for j in reversed(range(len(values))):
            xj, _, valid = values[j]
            nan = jnp.isnan(xj)
            if valid is not None:
                nan = nan & valid
            pick = nan if later is None else nan & ~later
            later = nan if later is None else later | nan
            chosen[j] = jnp.where(m_nan, pick, chosen[j])
    res = None
    for sel, (_, tj, _) in zip(chosen, values):
        p = jnp.where(sel, tj, jnp.zeros((), t.dtype))
        res = p if res is None else res + p
    return res
