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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops import fast
from cnn_jax.ops._validate import as_tuple, check_array_rank, is_int, spatial_rank
from cnn_jax.ops.padding import PaddingLike, Pairs, effective_kernel_size, resolve_padding
from cnn_jax.ops.shapes import pool_output_size

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


def _jit(*static: str) -> Any:
    """``jax.jit`` with the named arguments static.

    Every public op checks its arguments in Python, then runs one compiled core per
    geometry: fast when called eagerly, inlined under an outer ``jit``.
    """
    return functools.partial(jax.jit, static_argnames=static)


# --------------------------------------------------------------------------- geometry


class _Geometry(NamedTuple):
    n: int
    spatial: tuple[int, ...]
    window: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Pairs  # the explicit padding (from `padding`)
    full_padding: Pairs  # explicit padding plus the ceil-mode overhang on the high side
    out_shape: tuple[int, ...]

    def lax_args(self) -> dict[str, Any]:
        """Keyword arguments of ``lax.reduce_window`` over ``(N, *spatial, C)``."""
        return dict(
            window_dimensions=(1, *self.window, 1),
            window_strides=(1, *self.strides, 1),
            padding=((0, 0), *self.full_padding, (0, 0)),
            window_dilation=(1, *self.dilation, 1),
        )

    def taps(self, dim: int) -> np.ndarray:
        """Positions in the *unpadded* input of every window tap: ``(out, window)``."""
        o = np.arange(self.out_shape[dim])[:, None]
        j = np.arange(self.window[dim])[None, :]
        return o * self.strides[dim] + j * self.dilation[dim] - self.padding[dim][0]


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool, got {value!r}")
    return bool(value)


def _geometry(
    x: Array,
    window: IntOrSeq,
    strides: IntOrSeq | None,
    padding: PaddingLike,
    dilation: IntOrSeq,
    ceil_mode: bool,
) -> _Geometry:
    """Checks the window arguments and resolves padding, overhang and output shape."""
    n = spatial_rank(x)
    w = as_tuple(window, n, "window")
    s = w if strides is None else as_tuple(strides, n, "strides")
    d = as_tuple(dilation, n, "dilation")
    ceil_mode = _check_bool(ceil_mode, "ceil_mode")
    spatial = tuple(int(v) for v in x.shape[1:-1])
    pads = resolve_padding(padding, spatial, w, s, d)
    for dim, (i, k, dd, (lo, hi)) in enumerate(zip(spatial, w, d, pads, strict=True)):
        eff = effective_kernel_size(k, dd)
        if i + lo + hi < eff:
            raise ValueError(
                f"`window` (={window!r}) of size {k} (dilated to {eff}) in spatial dimension "
                f"{dim} is larger than the padded input ({i} + {lo} + {hi} = {i + lo + hi}); "
                f"input shape {tuple(x.shape)}, padding {padding!r}"
            )
    out = tuple(pool_output_size(spatial, w, s, pads, d, ceil_mode))  # type: ignore[arg-type]
    full = []
    for i, k, ss, dd, o, (lo, hi) in zip(spatial, w, s, d, out, pads, strict=True):
        need = (o - 1) * ss + effective_kernel_size(k, dd) - (i + lo)
        full.append((lo, max(hi, need)))
    return _Geometry(n, spatial, w, s, d, pads, tuple(full), out)


def _crop(y: Array, g: _Geometry) -> Array:
    """Crops a ``reduce_window`` result to ``g.out_shape``.

    Only has an effect in the corner case where ``ceil_mode`` drops a window that the
    floor rule keeps (a high padding of at least the window, as PyTorch forbids).
    """
    if tuple(y.shape[1:-1]) == g.out_shape:
        return y
    return y[(slice(None), *(slice(0, o) for o in g.out_shape), slice(None))]


def _check_windows_see_input(g: _Geometry, padding: PaddingLike) -> None:
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


def _lowest(dtype: Any) -> Any:
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


def _as_float(x: Array) -> Array:
    """``x`` as an array of a floating dtype (ints and bools become the default float)."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"`x` has complex dtype {x.dtype}; pooling needs real values")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _accumulator(dtype: Any) -> Any:
    """Sums of float16/bfloat16 are accumulated in float32."""
    return jnp.promote_types(dtype, jnp.float32)


def _window_sum(x: Array, g: _Geometry) -> Array:
    """Sum over every window with zero padding (explicit and overhang), in ``x.dtype``."""
    y = lax.reduce_window(x, np.array(0, x.dtype), lax.add, **g.lax_args())
    return _crop(y, g)


def _tap_counts(g: _Geometry, include_pad: bool) -> np.ndarray:
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


def _patches(x: Array, g: _Geometry, pad_value: Any) -> Array:
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
    g = _geometry(x, window, strides, padding, dilation, ceil_mode)
    _check_windows_see_input(g, padding)
    x = jnp.asarray(x)
    _lowest(x.dtype)  # dtype check
    if not jnp.issubdtype(x.dtype, jnp.inexact):  # not differentiable
        return _max_values(x, g=g)
    use_fast = fast.fast_path_enabled("max_pool") and fast.max_pool_fast_applies(g, x.shape[-1])
    return _max_pool(x, g, use_fast)


@_jit("g")
def _max_values(x: Array, g: _Geometry) -> Array:
    return _crop(lax.reduce_window(x, _lowest(x.dtype), lax.max, **g.lax_args()), g)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _max_pool(x: Array, g: _Geometry, fast_tangent: bool) -> Array:
    return _max_values(x, g=g)


@_max_pool.defjvp
def _max_pool_jvp(g: _Geometry, fast_tangent: bool, primals: tuple[Array], tangents: tuple[Array]):
    (x,), (t,) = primals, tangents
    if fast_tangent:
        # The same tangent, as a fused loop whose transpose is one too (no scatter):
        # `cnn_jax.ops.fast.max_pool_tangent`, switched by `cnn_jax.ops.use_fast_paths`.
        tangent = fast.max_pool_tangent(x, t, g)
    else:
        _, indices = _max_indices(x, g=g)
        tangent = _gather_max(t, indices)
    # The primal through `_max_pool` again, so that higher derivatives use this rule too.
    return _max_pool(x, g, fast_tangent), tangent


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
    g = _geometry(x, window, strides, padding, dilation, ceil_mode)
    include = _check_bool(count_include_pad, "count_include_pad")
    return _avg_pool(_as_float(x), g=g, include=include)


@_jit("g", "include")
def _avg_pool(x: Array, g: _Geometry, include: bool) -> Array:
    total = _window_sum(x.astype(_accumulator(x.dtype)), g)
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
    g = _geometry(x, window, strides, padding, dilation, ceil_mode)
    return _lp_pool(_as_float(x), g=g, p=p)


@_jit("g", "p")
def _lp_pool(x: Array, g: _Geometry, p: float) -> Array:
    acc = x.astype(_accumulator(x.dtype))
    powered = lax.integer_pow(acc, int(p)) if p.is_integer() else jnp.power(acc, p)
    total = _window_sum(powered, g)
    if p == 1.0:
        return total.astype(x.dtype)
    nonzero = total != 0
    safe = jnp.where(nonzero, total, 1.0)
    root = lax.sqrt(safe) if p == 2.0 else jnp.power(safe, 1.0 / p)
    return jnp.where(nonzero, root, 0.0).astype(x.dtype)


# --------------------------------------------------------------------------- indices


@_jit("g")
def _max_indices(x: Array, g: _Geometry) -> tuple[Array, Array]:
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
    lowest = _lowest(x.dtype)
    m = lax.reduce_window(x, lowest, lax.max, **g.lax_args())
    m = _crop(m, g)
    xp = jnp.pad(x, ((0, 0), *g.full_padding, (0, 0)), constant_values=lowest)
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
def _gather_max(x: Array, indices: Array) -> Array:
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
    g = _geometry(x, window, strides, padding, dilation, ceil_mode)
    _check_windows_see_input(g, padding)
    x = jnp.asarray(x)
    _lowest(x.dtype)  # dtype check
    return _max_pool_with_indices(x, g=g)


@_jit("g")
def _max_pool_with_indices(x: Array, g: _Geometry) -> tuple[Array, Array]:
    _, indices = _max_indices(x, g=g)
    return _gather_max(x, indices), indices


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
      ValueError: for mismatched shapes, a wrong ``output_shape`` length, or, when
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


@_jit("out_shape")
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


# --------------------------------------------------------------------------- global / adaptive


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
    keepdims = _check_bool(keepdims, "keepdims")
    _check_spatial_not_empty(x)
    x = _as_float(x)
    axes = tuple(range(1, n + 1))
    return jnp.mean(x, axis=axes, keepdims=keepdims, dtype=_accumulator(x.dtype)).astype(x.dtype)


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
    keepdims = _check_bool(keepdims, "keepdims")
    _check_spatial_not_empty(x)
    x = jnp.asarray(x)
    _lowest(x.dtype)  # dtype check
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:-1]), x.shape[-1])
    out = _first_max(flat, axis=1)
    return out.reshape(x.shape[0], *(1,) * n, x.shape[-1]) if keepdims else out


def _check_spatial_not_empty(x: Array) -> None:
    if any(v == 0 for v in x.shape[1:-1]):
        raise ValueError(f"`x` (shape {tuple(x.shape)}) has an empty spatial dimension")


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
    _check_spatial_not_empty(x)
    return n, out


@_jit("out_shape", "kind")
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
            x = _first_max(jnp.where(mask, y, _lowest(y.dtype)), axis + 1)
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
        ``output_size``, or an empty spatial dimension.
    """
    _, out = _adaptive_shape(x, output_size)
    x = _as_float(x)
    return _adaptive(x.astype(_accumulator(x.dtype)), out_shape=out, kind="avg").astype(x.dtype)


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
    _lowest(x.dtype)  # dtype check
    return _adaptive(x, out_shape=out, kind="max")


# --------------------------------------------------------------------------- stochastic, maxout


def stochastic_pool(
    x: Array,
    window: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: PaddingLike = "VALID",
    *,
    rng: Array | None = None,
    train: bool,
    ceil_mode: bool = False,
    dilation: IntOrSeq = 1,
) -> Array:
    """Stochastic pooling (Zeiler & Fergus, ICLR 2013).

    With ``a`` the activations of a window and ``p_i = a_i / sum_j a_j``:

    * ``train=True``: one activation per window, drawn with probability ``p_i``
      (independently for every window, sample and channel); an all-zero window gives
      0. The gradient goes to the drawn activation.
    * ``train=False``: the probability-weighted average ``sum_i p_i a_i =
      sum_i a_i^2 / sum_i a_i`` (0 for an all-zero window).

    The method is defined for non-negative (post-ReLU) activations: negative inputs are
    clipped to 0, i.e. ``stochastic_pool(x) == stochastic_pool(relu(x))`` (with the
    gradient of the clip). Padding and the ceil-mode overhang are zeros, which are
    never drawn.

    Args:
      x: input of shape ``(N, *spatial, C)``; integer inputs become the default float.
      window: window size, an int or one per spatial dimension.
      strides: the strides; defaults to ``window``.
      padding: any padding of ``cnn_jax.ops.padding``.
      rng: a ``jax.random`` key; required when ``train``.
      train: draw (``True``) or take the expectation-like weighted average (``False``).
      ceil_mode: compute the output size with ``ceil`` instead of ``floor`` (PyTorch).
      dilation: spacing of the window's taps.

    Returns:
      An array ``(N, *pool_output_size(spatial, ...), C)`` of a floating dtype.

    Raises:
      TypeError: for a non-bool ``train`` or arguments of the wrong type.
      ValueError: without ``rng`` when ``train``, or as ``avg_pool``.
    """
    train = _check_bool(train, "train")
    g = _geometry(x, window, strides, padding, dilation, ceil_mode)
    if train and rng is None:
        raise ValueError("`rng` (=None) must be a jax.random key when `train` is True")
    if train and not (
        isinstance(rng, jax.Array)
        and (jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) or rng.dtype == jnp.uint32)
    ):
        raise TypeError(f"`rng` must be a jax.random key, got {rng!r}")
    x = _as_float(x)
    if not train:
        return _stochastic_eval(x, g=g)
    return _stochastic_train(x, rng, g=g)


@_jit("g")
def _stochastic_eval(x: Array, g: _Geometry) -> Array:
    a = jax.nn.relu(x.astype(_accumulator(x.dtype)))
    s1 = _window_sum(a, g)
    s2 = _window_sum(a * a, g)
    positive = s1 > 0
    return jnp.where(positive, s2 / jnp.where(positive, s1, 1.0), 0.0).astype(x.dtype)


@_jit("g")
def _stochastic_train(x: Array, rng: Array, g: _Geometry) -> Array:
    a = jax.nn.relu(x.astype(_accumulator(x.dtype)))
    patches = _patches(a, g, 0.0)  # (N, *out, C, K)
    weights = lax.stop_gradient(patches)
    # Inverse-CDF sampling with one uniform per window: the first tap whose cumulative
    # weight exceeds u * total. Zero-weight taps are never chosen: their cumulative
    # weight equals the previous one; the clip guards against rounding of u * total.
    cum = jnp.cumsum(weights, axis=-1)
    # (drawn flat: XLA compiles threefry for a 1-D shape much faster than for an N-D one)
    u = jax.random.uniform(rng, (math.prod(cum.shape[:-1]),), cum.dtype).reshape(cum.shape[:-1])
    choice = jnp.sum(cum <= (u * cum[..., -1])[..., None], axis=-1)
    positive = weights > 0
    k = weights.shape[-1]
    last_positive = k - 1 - jnp.argmax(positive[..., ::-1], axis=-1)
    choice = jnp.minimum(choice, last_positive)
    drawn = jnp.take_along_axis(patches, choice[..., None], axis=-1)[..., 0]
    return drawn.astype(x.dtype)


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
