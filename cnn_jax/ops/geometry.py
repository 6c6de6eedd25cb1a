"""The geometry of a windowed op: strides, padding, dilation and the shapes they give.

One hashable type, ``Geometry``, describes a convolution, a transposed convolution or a
pooling window for ``lax`` and for the fast paths' custom derivatives (it is their static
argument under ``jax.jit`` and ``jax.custom_jvp``). The output size along a spatial
dimension is the conv arithmetic's ``o = floor((i + lo + hi - (d (k - 1) + 1)) / s) + 1``
(Dumoulin & Visin 2016, relationship 15 with dilation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from jax import lax

from cnn_jax.ops._validate import as_tuple, spatial_rank
from cnn_jax.ops.limits import check_elements, check_window
from cnn_jax.ops.padding import PaddingLike, Pairs, effective_kernel_size, resolve_padding
from cnn_jax.ops.shapes import pool_output_size

__all__ = [
    "ConvGeometry",
    "Geometry",
    "TransposeGeometry",
    "check_bool",
    "conv_out_shape",
    "dimension_numbers",
    "pool_geometry",
    "tap_slice",
    "taps",
    "zero_pad",
]

Array = Any


class Geometry(NamedTuple):
    """Static arguments of a windowed op over ``(N, *spatial, C)`` arrays.

    The first five fields describe every op; the others are filled where an op needs
    them (a pooling geometry from ``pool_geometry``, a transposed convolution's
    ``fwd_low``).

    Attributes:
      strides: window strides, one per spatial dimension (for a transposed convolution:
        the forward convolution's strides, the ``lhs_dilation`` of its ``lax`` call).
      padding: ``(lo, hi)`` padding per spatial dimension, non-negative: the zero
        padding of a convolution's ``lax`` call, the ``lax`` call's padding of a
        transposed convolution, or the explicit padding of a pooling window.
      dilation: spacing of the window's taps.
      groups: ``feature_group_count`` of a convolution (1 for pooling).
      precision: ``lax`` precision of a convolution's products.
      window: the window size (pooling).
      spatial: the unpadded input's spatial shape (pooling).
      full_padding: ``padding`` plus the ceil-mode overhang on the high side (pooling).
      out_shape: the output's spatial shape (pooling).
      fwd_low: the forward convolution's low padding (transposed convolution).
    """

    strides: tuple[int, ...]
    padding: Pairs
    dilation: tuple[int, ...]
    groups: int = 1
    precision: Any = None
    window: tuple[int, ...] = ()
    spatial: tuple[int, ...] = ()
    full_padding: Pairs = ()
    out_shape: tuple[int, ...] = ()
    fwd_low: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        """The number of spatial dimensions."""
        return len(self.strides)

    def lax_args(self) -> dict[str, Any]:
        """Keyword arguments of ``lax.reduce_window`` over ``(N, *spatial, C)`` (pooling)."""
        return dict(
            window_dimensions=(1, *self.window, 1),
            window_strides=(1, *self.strides, 1),
            padding=((0, 0), *self.full_padding, (0, 0)),
            window_dilation=(1, *self.dilation, 1),
        )

    def taps(self, dim: int) -> np.ndarray:
        """Positions in the *unpadded* input of every window tap: ``(out, window)`` (pooling)."""
        o = np.arange(self.out_shape[dim])[:, None]
        j = np.arange(self.window[dim])[None, :]
        return o * self.strides[dim] + j * self.dilation[dim] - self.padding[dim][0]


#: A convolution's geometry: ``ConvGeometry(strides, padding, dilation, groups, precision)``.
ConvGeometry = Geometry


def TransposeGeometry(  # noqa: N802 (the name of the type it replaces)
    strides: tuple[int, ...],
    lax_padding: Pairs,
    fwd_low: tuple[int, ...],
    dilation: tuple[int, ...],
    precision: Any,
    groups: int,
) -> Geometry:
    """A transposed convolution's ``Geometry``, from the arguments of its ``lax`` call.

    Args:
      strides: the forward convolution's strides (``lhs_dilation`` of the ``lax`` call).
      lax_padding: the ``lax`` call's padding pairs.
      fwd_low: the forward convolution's low padding per spatial dimension.
      dilation: kernel dilation.
      precision: ``lax`` precision.
      groups: the forward convolution's groups.

    Returns:
      ``Geometry(strides, lax_padding, dilation, groups, precision, fwd_low=fwd_low)``.
    """
    return Geometry(
        tuple(strides), tuple(lax_padding), tuple(dilation), groups, precision, fwd_low=fwd_low
    )


def dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """Channels-last dimension numbers for ``n`` spatial dimensions (NHWC, HWIO, NHWC).

    Args:
      n: the number of spatial dimensions.

    Returns:
      The ``lax`` dimension numbers of an ``n``-D channels-last convolution.
    """
    spatial = tuple(range(1, n + 1))
    io = (0, n + 1, *spatial)
    return lax.ConvDimensionNumbers(lhs_spec=io, rhs_spec=(n + 1, n, *range(n)), out_spec=io)


def conv_out_shape(spatial: Sequence[int], window: Sequence[int], g: Geometry) -> tuple[int, ...]:
    """A convolution's output spatial shape for the input ``spatial`` and kernel ``window``.

    Args:
      spatial: the input's spatial shape.
      window: the kernel's spatial shape.
      g: the convolution's geometry.

    Returns:
      ``floor((i + lo + hi - (d (k - 1) + 1)) / s) + 1`` per spatial dimension.
    """
    return tuple(
        (i + lo + hi - (d * (k - 1) + 1)) // s + 1
        for i, k, s, d, (lo, hi) in zip(spatial, window, g.strides, g.dilation, g.padding)
    )


def taps(window: Sequence[int]) -> list[tuple[int, ...]]:
    """Every tap of a window, in row-major order."""
    return list(np.ndindex(*window))


def tap_slice(
    xp: Array, tap: Sequence[int], out: Sequence[int], strides: Sequence[int], dil: Sequence[int]
) -> Array:
    """``xp[:, t*d : t*d + (o-1)*s + 1 : s, :]`` per spatial dimension: one tap's inputs."""
    start = tuple(t * d for t, d in zip(tap, dil))
    limit = tuple(st + (o - 1) * s + 1 for st, o, s in zip(start, out, strides))
    return lax.slice(xp, (0, *start, 0), (xp.shape[0], *limit, xp.shape[-1]), (1, *strides, 1))


def zero_pad(x: Array, g: Geometry) -> Array:
    """``x`` with ``g.padding`` zeros around its spatial dimensions."""
    if not any(lo or hi for lo, hi in g.padding):
        return x
    return lax.pad(
        x, np.array(0, x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in g.padding), (0, 0, 0)]
    )


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; a ``TypeError`` naming ``name`` if it is not one."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool, got {value!r}")
    return bool(value)


def pool_geometry(
    x: Array,
    window: Any,
    strides: Any,
    padding: PaddingLike,
    dilation: Any,
    ceil_mode: bool,
) -> Geometry:
    """Checks a pooling window's arguments and resolves padding, overhang and output shape.

    Args:
      x: the input ``(N, *spatial, C)``.
      window: an int or one per spatial dimension.
      strides: an int, one per spatial dimension, or ``None`` (the window).
      padding: any padding of ``cnn_jax.ops.padding``.
      dilation: an int or one per spatial dimension.
      ceil_mode: round the output size up (``cnn_jax.ops.shapes.pool_output_size``).

    Returns:
      The pooling ``Geometry`` (``groups`` 1, no precision).

    Raises:
      TypeError, ValueError: naming the argument, for wrong types, non-positive sizes,
        an unknown padding, a window larger than the padded input, or sizes beyond
        ``cnn_jax.ops.limits``.
    """
    n = spatial_rank(x)
    w = as_tuple(window, n, "window")
    s = w if strides is None else as_tuple(strides, n, "strides")
    d = as_tuple(dilation, n, "dilation")
    ceil_mode = check_bool(ceil_mode, "ceil_mode")
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
    for dim, (i, k, dd, p) in enumerate(zip(spatial, w, d, pads, strict=True)):
        check_window(dim, i, k, dd, p, padding)
    out = tuple(pool_output_size(spatial, w, s, pads, d, ceil_mode))  # type: ignore[arg-type]
    full = []
    for i, k, ss, dd, o, (lo, hi) in zip(spatial, w, s, d, out, pads, strict=True):
        need = (o - 1) * ss + effective_kernel_size(k, dd) - (i + lo)
        full.append((lo, max(hi, need)))
    culprit = f"`padding` (={padding!r}) with `strides` (={strides!r})"
    check_elements((x.shape[0], *out, x.shape[-1]), "the output", culprit)
    padded = (i + lo + hi for i, (lo, hi) in zip(spatial, full, strict=True))
    check_elements((x.shape[0], *padded, x.shape[-1]), "the padded input", culprit)
    return Geometry(
        s, tuple(pads), d, window=w, spatial=spatial, full_padding=tuple(full), out_shape=out
    )
