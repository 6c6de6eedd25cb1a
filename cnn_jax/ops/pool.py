"""Pooling over ``jax.lax``: channels-last, 1, 2 or 3 (or more) spatial dimensions.

Inputs are ``(N, *spatial, C)``. Windowed ops take
``op(x, window, strides=None, padding='VALID', *, ceil_mode=False, dilation=1, ...)``:

* ``window`` and ``strides`` are an int or one int per spatial dimension; ``strides``
  defaults to ``window`` (non-overlapping windows, as in PyTorch);
* ``padding`` is any padding of ``cnn_jax.ops.padding`` (``'SAME'``, ``'VALID'``,
  ``'FULL'``, ``'CAUSAL'``, an int, ints, or ``(lo, hi)`` pairs), resolved with the
  effective window ``d (w - 1) + 1``;
* ``ceil_mode=True`` rounds the output size up as PyTorch does
  (``cnn_jax.ops.shapes.pool_output_size``): the missing cells of the windows that hang
  off the high end are an *overhang*, which is never counted as input (nor, for the
  average, in the divisor);
* ``dilation`` spaces the window's taps (PyTorch's ``dilation`` of ``max_pool``).

Max pooling pads with the lowest value of the dtype (``-inf`` for floats), average and
power-average pooling with zeros. Every argument is checked before any XLA code is
built, so a bad one gives a ``TypeError``/``ValueError`` naming it and its value.
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

from cnn_jax.ops import pool_fast
from cnn_jax.ops._pool_common import (
    accumulator,
    as_float,
    check_windows_see_input,
    crop,
    jit,
    lowest,
    window_sum,
)
from cnn_jax.ops._validate import check_array_rank, is_int
from cnn_jax.ops.fast_paths import fast_path_enabled
from cnn_jax.ops.geometry import Geometry, check_bool, pool_geometry
from cnn_jax.ops.padding import PaddingLike
from cnn_jax.ops.pool_adaptive import (
    adaptive_avg_pool,
    adaptive_max_pool,
    global_avg_pool,
    global_max_pool,
)
from cnn_jax.ops.pool_adaptive import (
    adaptive_bins as adaptive_bins,  # ``cnn_jax.ops.pool.adaptive_bins``, as before
)
from cnn_jax.ops.pool_indices import gather_max, max_indices, max_pool_with_indices, max_unpool
from cnn_jax.ops.pool_stochastic import stochastic_pool

__all__ = [
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "avg_pool",
    "global_avg_pool",
    "global_max_pool",
    "lp_pool",
    "max_pool",
    "max_pool_with_indices",
    "max_unpool",
    "maxout",
    "stochastic_pool",
]

Array = Any
IntOrSeq = int | Sequence[int]


def _tap_counts(g: Geometry, include_pad: bool) -> np.ndarray:
    """How many taps of every window fall in the input (or the explicitly padded input).

    The window is a product of per-dimension tap sets, so the count is the product of
    per-dimension counts. Returns a float64 array of shape ``(1, *out_shape, 1)``.
    """
    count = np.ones((), np.float64)
    for dim in range(g.n):
        taps = g.taps(dim)
        lo, hi = g.padding[dim]
        if include_pad:
            inside = (taps >= -lo) & (taps < g.spatial[dim] + hi)
        else:
            inside = (taps >= 0) & (taps < g.spatial[dim])
        c = inside.sum(axis=1).astype(np.float64)
        count = np.multiply.outer(count, c)
    return count.reshape(1, *g.out_shape, 1)


# --------------------------------------------------------------------------- max / avg / lp


def max_pool(
    x: Array,
    window: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: PaddingLike = "VALID",
    *,
    ceil_mode: bool = False,
    dilation: IntOrSeq = 1,
) -> Array:
    """Max pooling: ``out[n, o, c] = max_w x_padded[n, o * s + w * d, c]``.

    Padding cells hold the dtype's lowest value, so they never win against an input
    cell. The values are ``lax.reduce_window`` with ``lax.max``. The gradient goes to
    one arg-max of every window only (the max gate routes the gradient): the first
    maximum in window order, the cell ``max_pool_with_indices`` returns, as PyTorch. It
    is a custom JVP (the tangent gathered at those indices), which also covers dilated
    windows, whose ``reduce_window`` gradient JAX does not implement, and is several
    times faster on CPU than XLA's ``select_and_scatter_add``.

    Args:
      x: input of shape ``(N, *spatial, C)``.
      window: window size, an int or one per spatial dimension.
      strides: the strides; defaults to ``window``.
      padding: ``'SAME'``, ``'VALID'``, ``'FULL'``, ``'CAUSAL'``, an int, a sequence of
        ints or a sequence of ``(lo, hi)`` pairs.
      ceil_mode: compute the output size with ``ceil`` instead of ``floor`` (PyTorch).
      dilation: spacing of the window's taps, an int or one per spatial dimension.

    Returns:
      An array ``(N, *pool_output_size(spatial, ...), C)`` of the dtype of ``x``.

    Raises:
      TypeError: for arguments of the wrong type.
      ValueError: for a wrong rank, non-positive window/strides/dilation, an unknown
        padding, a window larger than the padded input, or a padding so large that a
        window covers no input cell.
    """
    g = pool_geometry(x, window, strides, padding, dilation, ceil_mode)
    check_windows_see_input(g, padding)
    x = jnp.asarray(x)
    lowest(x.dtype)  # dtype check
    if not jnp.issubdtype(x.dtype, jnp.inexact):  # not differentiable
        return _max_values(x, g=g)
    use_fast = fast_path_enabled("max_pool") and pool_fast.max_pool_fast_applies(g, x.shape[-1])
    return _max_pool_jit(x, g=g, fast_tangent=use_fast)


@jit("g")
def _max_values(x: Array, g: Geometry) -> Array:
    return crop(lax.reduce_window(x, lowest(x.dtype), lax.max, **g.lax_args()), g)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _max_pool(x: Array, g: Geometry, fast_tangent: bool) -> Array:
    return _max_values(x, g=g)


@_max_pool.defjvp
def _max_pool_jvp(g: Geometry, fast_tangent: bool, primals: tuple[Array], tangents: tuple[Array]):
    (x,), (t,) = primals, tangents
    if fast_tangent:
        # The same tangent, as a fused loop whose transpose is one too (no scatter):
        # `cnn_jax.ops.pool_fast.max_pool_tangent`, switched by `cnn_jax.ops.use_fast_paths`.
        tangent = pool_fast.max_pool_tangent(x, t, g)
    else:
        _, indices = max_indices(x, g=g)
        tangent = gather_max(t, indices)
    # The primal through `_max_pool` again, so that higher derivatives use this rule too.
    return _max_pool(x, g, fast_tangent), tangent


# One compiled program per geometry (static), so that eager calls do not re-trace the rule.
_max_pool_jit = jit("g", "fast_tangent")(_max_pool)


def avg_pool(
    x: Array,
    window: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: PaddingLike = "VALID",
    *,
    ceil_mode: bool = False,
    dilation: IntOrSeq = 1,
    count_include_pad: bool = True,
) -> Array:
    """Average pooling, with PyTorch's divisor rules.

    The sum over every window (zero padding) is divided by the number of its taps that
    lie in the explicitly padded input if ``count_include_pad`` (PyTorch's default), or
    in the input otherwise. The ceil-mode overhang is never counted, exactly as in
    ``torch.nn.functional.avg_pool{1,2,3}d``. A window with no input cell and
    ``count_include_pad=False`` (possible only with a padding PyTorch rejects) gives 0.

    Args:
      x: input of shape ``(N, *spatial, C)``; integer inputs become the default float.
      window: window size, an int or one per spatial dimension.
      strides: the strides; defaults to ``window``.
      padding: any padding of ``cnn_jax.ops.padding``.
      ceil_mode: compute the output size with ``ceil`` instead of ``floor`` (PyTorch).
      dilation: spacing of the window's taps (PyTorch's ``avg_pool`` has none).
      count_include_pad: whether the explicit padding counts in the divisor.

    Returns:
      An array ``(N, *pool_output_size(spatial, ...), C)`` of a floating dtype.

    Raises:
      TypeError: for arguments of the wrong type.
      ValueError: for a wrong rank, non-positive window/strides/dilation, an unknown
        padding or a window larger than the padded input.
    """
    g = pool_geometry(x, window, strides, padding, dilation, ceil_mode)
    include = check_bool(count_include_pad, "count_include_pad")
    return _avg_pool(as_float(x), g=g, include=include)


@jit("g", "include")
def _avg_pool(x: Array, g: Geometry, include: bool) -> Array:
    total = window_sum(x.astype(accumulator(x.dtype)), g)
    count = np.maximum(_tap_counts(g, include), 1.0)
    return (total / count.astype(total.dtype)).astype(x.dtype)


def _check_p(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"`p` must be a real number, got {p!r}")
    if not p > 0 or not math.isfinite(p):
        raise ValueError(
            f"`p` (={p!r}) must be positive and finite (p = inf is a max pool of |x|: "
            "use max_pool(abs(x), ...))"
        )
    return float(p)


def lp_pool(
    x: Array,
    window: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: PaddingLike = "VALID",
    *,
    ceil_mode: bool = False,
    dilation: IntOrSeq = 1,
    p: float = 2.0,
) -> Array:
    """Power-average (Lp) pooling: ``out = (sum_w x^p) ^ (1 / p)`` over every window.

    As ``torch.nn.functional.lp_pool{1,2,3}d``: ``x ** p`` is not an absolute value, so
    negative inputs give NaN for non-integer ``p`` and an odd ``p`` can give a negative
    sum whose root is NaN (``p = 1`` is then the plain window sum). ``p = 2`` is the L2
    pooling of Sermanet et al. (2012). Padding (and the ceil-mode overhang) adds zeros.
    Unlike PyTorch, which computes ``avg_pool(x ** p) * prod(window)``, windows that hang
    off the end in ``ceil_mode`` sum only their input cells (PyTorch rescales them by
    ``prod(window) / cells``). Where the window sum is 0 the output is 0 with gradient
    0 (PyTorch gives a NaN gradient there).

    Args:
      x: input of shape ``(N, *spatial, C)``; integer inputs become the default float.
      window: window size, an int or one per spatial dimension.
      strides: the strides; defaults to ``window``.
      padding: any padding of ``cnn_jax.ops.padding`` (PyTorch's has none).
      ceil_mode: compute the output size with ``ceil`` instead of ``floor`` (PyTorch).
      dilation: spacing of the window's taps (PyTorch's has none).
      p: the power, a positive finite number.

    Returns:
      An array ``(N, *pool_output_size(spatial, ...), C)`` of a floating dtype.

    Raises:
      TypeError: for arguments of the wrong type.
      ValueError: for ``p <= 0`` or infinite, a wrong rank, non-positive
        window/strides/dilation, an unknown padding or a window larger than the padded
        input.
    """
    p = _check_p(p)
    g = pool_geometry(x, window, strides, padding, dilation, ceil_mode)
    return _lp_pool(as_float(x), g=g, p=p)


@jit("g", "p")
def _lp_pool(x: Array, g: Geometry, p: float) -> Array:
    acc = x.astype(accumulator(x.dtype))
    powered = lax.integer_pow(acc, int(p)) if p.is_integer() else jnp.power(acc, p)
    total = window_sum(powered, g)
    if p == 1.0:
        return total.astype(x.dtype)
    nonzero = total != 0
    safe = jnp.where(nonzero, total, 1.0)
    root = lax.sqrt(safe) if p == 2.0 else jnp.power(safe, 1.0 / p)
    return jnp.where(nonzero, root, 0.0).astype(x.dtype)


def maxout(x: Array, num_pieces: int, axis: int = -1) -> Array:
    """Maxout (Goodfellow et al., 2013): max over groups of consecutive feature maps.

    Output channel ``j`` is the maximum of input channels ``j * k, ..., j * k + k - 1``
    with ``k = num_pieces``, so ``C`` channels become ``C / k``.

    Args:
      x: an array of any rank >= 1.
      num_pieces: ``k``, the number of pieces per unit; must divide ``x.shape[axis]``.
      axis: the channel axis.

    Returns:
      ``x`` with ``x.shape[axis] // num_pieces`` entries along ``axis``.

    Raises:
      TypeError: for a non-int ``num_pieces`` or ``axis``, or a non-array ``x``.
      ValueError: for a non-positive ``num_pieces``, one that does not divide the
        channels, or an ``axis`` out of range.
    """
    check_array_rank(x, "x", None, "")
    if not is_int(num_pieces):
        raise TypeError(f"`num_pieces` must be an int, got {num_pieces!r}")
    if not is_int(axis):
        raise TypeError(f"`axis` must be an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim or x.ndim == 0:
        raise ValueError(f"`axis` (={axis}) is out of range for `x` of shape {tuple(x.shape)}")
    axis = int(axis) % x.ndim
    chans = x.shape[axis]
    if num_pieces < 1:
        raise ValueError(f"`num_pieces` (={num_pieces}) must be positive")
    if chans % num_pieces:
        raise ValueError(
            f"`num_pieces` (={num_pieces}) must divide the number of channels (={chans}) "
            f"along axis {axis} of `x` (shape {tuple(x.shape)})"
        )
    x = jnp.asarray(x)
    y = x.reshape(*x.shape[:axis], chans // num_pieces, num_pieces, *x.shape[axis + 1 :])
    return jnp.max(y, axis=axis + 1)
