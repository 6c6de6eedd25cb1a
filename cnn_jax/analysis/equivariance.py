"""How a network's feature maps move when its input is translated, rotated or scaled.

Definitions (``f`` a map from images ``(N, H, W, C)`` to feature maps ``(N, H', W', C')``,
``T`` a transformation of the image plane applied to images and feature maps alike):

* **Equivariance error** ``||f(T x) - T' f(x)|| / ||f(x)||`` over a region of the output
  plane, ``T'`` the same transformation at the output's resolution (a translation by
  ``d`` becomes one by ``d / stride``). A convolution of stride 1 without padding
  effects is exactly translation-equivariant: ``f(T x) = T f(x)`` wherever neither side
  reads the border (:func:`translation_equivariance_error` excludes that margin).
* **Invariance change** ``||f(T x) - f(x)|| / ||f(x)||``: how much the features move
  at all; pooling makes it shrink with depth (:func:`invariance_change`).

Translations are by whole pixels: ``jnp.roll`` (``mode='wrap'``) or a shift that fills
with zeros (``mode='zeros'``). Rotations and scalings about the image centre resample
bilinearly (``jax.scipy.ndimage.map_coordinates``, order 1, zeros outside); their error
is measured on the central disc of radius ``radius_fraction * min(H', W') / 2``, where
both sides are defined. Pure functions of arrays: ``f`` is any callable, e.g.
``lambda x: model.apply(variables, x)[1]['layer1']``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "invariance_change",
    "rotate",
    "rotation_equivariance_error",
    "scale",
    "scale_equivariance_error",
    "translate",
    "translation_equivariance_error",
]

Array = Any
FeatureFn = Callable[[Array], Array]


def _check_images(x: Any, name: str = "x") -> Array:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        got = f"shape {tuple(shape)}" if shape is not None else repr(x)
        raise ValueError(f"`{name}` must be images of shape (N, H, W, C), got {got}")
    return jnp.asarray(x)


def _check_int(value: Any, name: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"`{name}` (={value!r}) must be >= {low}")
    return int(value)


def _check_shift(shift: Any) -> tuple[int, int]:
    if not isinstance(shift, Sequence) or len(shift) != 2:
        raise ValueError(f"`shift` (={shift!r}) must be a pair of ints (dy, dx)")
    return _check_int(shift[0], "shift[0]"), _check_int(shift[1], "shift[1]")


def translate(x: Array, shift: Sequence[int], mode: str = "wrap") -> Array:
    """Translates images by whole pixels: ``out[:, i, j] = x[:, i - dy, j - dx]``.

    Args:
      x: ``(N, H, W, C)``.
      shift: ``(dy, dx)``; positive moves the content down and right.
      mode: ``'wrap'`` (circular, ``jnp.roll``) or ``'zeros'`` (the vacated pixels are 0).

    Returns:
      The translated images, the shape of ``x``.

    Raises:
      ValueError: for ``x`` not 4-d, a bad ``shift`` or an unknown ``mode``.
    """
    x = _check_images(x)
    dy, dx = _check_shift(shift)
    if mode not in ("wrap", "zeros"):
        raise ValueError(f"`mode` (={mode!r}) must be 'wrap' or 'zeros'")
    out = jnp.roll(x, (dy, dx), axis=(1, 2))
    if mode == "zeros":
        h, w = x.shape[1:3]
        rows = jnp.arange(h) - dy
        cols = jnp.arange(w) - dx
        keep = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
        out = jnp.where(keep[None, :, :, None], out, 0)
    return out


def _resample(x: Array, matrix: np.ndarray) -> Array:
    """``out(p) = x(c + matrix @ (p - c))`` for each output pixel ``p`` (bilinear, zeros out)."""
    n, h, w, c = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32))
    yy, xx = yy.T, xx.T
    sy = cy + matrix[0, 0] * (yy - cy) + matrix[0, 1] * (xx - cx)
    sx = cx + matrix[1, 0] * (yy - cy) + matrix[1, 1] * (xx - cx)

    def one(plane: Array) -> Array:
        return jax.scipy.ndimage.map_coordinates(plane, [sy, sx], order=1, mode="constant")

    planes = jnp.moveaxis(x, -1, 1).reshape(n * c, h, w).astype(jnp.float32)
    out = jax.vmap(one)(planes)
    return jnp.moveaxis(out.reshape(n, c, h, w), 1, -1).astype(x.dtype)


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"`{name}` (={value!r}) must be finite")
    return float(value)


def rotate(x: Array, degrees: float) -> Array:
    """Rotates images counter-clockwise (as displayed, row 0 on top) about their centre.

    Bilinear resampling; pixels that come from outside the image are 0. A multiple of
    90 degrees on a square image is an exact permutation of the pixels.

    Args:
      x: ``(N, H, W, C)``.
      degrees: the angle.

    Returns:
      The rotated images, the shape of ``x``.
    """
    x = _check_images(x)
    t = np.deg2rad(_check_real(degrees, "degrees"))
    # Output pixel (y, x) reads the input at R(-t) applied about the centre; with rows
    # pointing down, a counter-clockwise display rotation is this matrix.
    cos, sin = np.cos(t), np.sin(t)
    matrix = np.array([[cos, sin], [-sin, cos]])
    if np.isclose(t % (np.pi / 2), 0) or np.isclose(t % (np.pi / 2), np.pi / 2):
        matrix = np.round(matrix)
    return _resample(x, matrix)


def scale(x: Array, factor: float) -> Array:
    """Magnifies images by ``factor`` about their centre (bilinear; zeros outside).

    Args:
      x: ``(N, H, W, C)``.
      factor: > 0; above 1 zooms in.

    Returns:
      The scaled images, the shape of ``x``.

    Raises:
      ValueError: if ``factor`` is not positive.
    """
    x = _check_images(x)
    f = _check_real(factor, "factor")
    if f <= 0:
        raise ValueError(f"`factor` (={factor!r}) must be > 0")
    return _resample(x, np.eye(2) / f)


def _relative(diff: Array, ref: Array, mask: Array | None = None) -> float:
    if mask is not None:
        diff = diff * mask
        ref = ref * mask
    num = jnp.sqrt(jnp.sum(jnp.square(diff.astype(jnp.float32))))
    den = jnp.sqrt(jnp.sum(jnp.square(ref.astype(jnp.float32))))
    return float(num / jnp.maximum(den, jnp.finfo(jnp.float32).tiny))


def translation_equivariance_error(
    f: FeatureFn,
    x: Array,
    shift: Sequence[int],
    *,
    stride: int = 1,
    margin: int = 0,
    mode: str = "wrap",
) -> float:
    """``||f(T x) - T' f(x)|| / ||f(x)||`` away from the border, ``T`` a translation.

    ``T'`` translates by ``shift / stride`` (``shift`` must be a multiple of ``stride``).
    The comparison drops, on each side of the output, ``margin`` pixels (the reach of
    the borders: ``(k - 1) // 2`` per stacked 'SAME' convolution of size ``k``, 0 for
    'VALID' ones) plus the ``|shift / stride|`` rows and columns the translation moved in
    from outside (``mode='wrap'``) or filled with zeros. For a stride-1 convolution
    without padding effects the result is 0 up to float rounding.

    Args:
      f: images ``(N, H, W, C)`` -> feature maps ``(N, H', W', C')``.
      x: images.
      shift: ``(dy, dx)`` in input pixels.
      stride: the total stride of ``f`` (``H / H'``).
      margin: output pixels per side excluded besides the shift.
      mode: how ``x`` is translated, ``'wrap'`` or ``'zeros'``.

    Returns:
      The relative error (0 for exact equivariance).

    Raises:
      ValueError: for a ``shift`` that is not a multiple of ``stride``, a negative
        ``margin``, or nothing left to compare.
    """
    x = _check_images(x)
    dy, dx = _check_shift(shift)
    s = _check_int(stride, "stride", 1)
    m = _check_int(margin, "margin", 0)
    if dy % s or dx % s:
        raise ValueError(f"`shift` (={tuple(shift)!r}) must be a multiple of `stride` (={s})")
    y = jnp.asarray(f(x))
    y_shifted = jnp.asarray(f(translate(x, (dy, dx), mode)))
    oy, ox = dy // s, dx // s
    expected = jnp.roll(y, (oy, ox), axis=(1, 2))
    h, w = y.shape[1:3]
    top, bottom = m + max(oy, 0), h - m - max(-oy, 0)
    left, right = m + max(ox, 0), w - m - max(-ox, 0)
    if top >= bottom or left >= right:
        raise ValueError(
            f"nothing left to compare: output {h}x{w}, `margin` (={m}) and `shift` "
            f"(={tuple(shift)!r}) exclude every row or column"
        )
    window = (slice(None), slice(top, bottom), slice(left, right))
    return _relative(y_shifted[window] - expected[window], expected[window])


def _disc(h: int, w: int, radius_fraction: float) -> Array:
    r = _check_real(radius_fraction, "radius_fraction")
    if not 0 < r <= 1:
        raise ValueError(f"`radius_fraction` (={radius_fraction!r}) must be in (0, 1]")
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    return jnp.asarray((d <= r * min(h, w) / 2)[None, :, :, None], jnp.float32)


def rotation_equivariance_error(
    f: FeatureFn, x: Array, degrees: float, *, radius_fraction: float = 0.7
) -> float:
    """``||f(R x) - R f(x)|| / ||f(x)||`` on the central disc, ``R`` a rotation.

    ``R`` is applied at each side's resolution (:func:`rotate`). An isotropic kernel
    gives only the resampling error; a generic learned or random kernel does not
    commute with rotations.

    Args:
      f: images -> feature maps.
      x: images.
      degrees: the rotation angle.
      radius_fraction: the disc's radius as a fraction of half the smaller output side.

    Returns:
      The relative error.
    """
    x = _check_images(x)
    expected = rotate(jnp.asarray(f(x)), degrees)
    got = jnp.asarray(f(rotate(x, degrees)))
    mask = _disc(*expected.shape[1:3], radius_fraction)
    return _relative(got - expected, expected, mask)


def scale_equivariance_error(
    f: FeatureFn, x: Array, factor: float, *, radius_fraction: float = 0.7
) -> float:
    """``||f(S x) - S f(x)|| / ||f(x)||`` on the central disc, ``S`` a scaling by ``factor``.

    Args:
      f: images -> feature maps.
      x: images.
      factor: the magnification (> 0).
      radius_fraction: the disc's radius as a fraction of half the smaller output side
        (for ``factor < 1`` keep it below ``factor`` so that both sides are defined).

    Returns:
      The relative error.
    """
    x = _check_images(x)
    expected = scale(jnp.asarray(f(x)), factor)
    got = jnp.asarray(f(scale(x, factor)))
    mask = _disc(*expected.shape[1:3], radius_fraction)
    return _relative(got - expected, expected, mask)


def invariance_change(
    f: FeatureFn, x: Array, shift: Sequence[int], *, mode: str = "zeros"
) -> float:
    """``||f(T x) - f(x)|| / ||f(x)||``: how much the features move under a translation.

    0 means ``f`` is invariant to the translation; about ``sqrt(2)`` means the moved
    features are unrelated to the original ones.

    Args:
      f: images -> features (any shape with a leading batch axis).
      x: images.
      shift: ``(dy, dx)`` in input pixels.
      mode: how ``x`` is translated (:func:`translate`).

    Returns:
      The relative change.
    """
    x = _check_images(x)
    y = jnp.asarray(f(x))
    return _relative(jnp.asarray(f(translate(x, shift, mode))) - y, y)
