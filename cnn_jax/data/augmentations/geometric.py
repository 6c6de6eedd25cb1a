"""Geometric augmentations: crops, flips, rotations.

Ops: ``random_crop``, ``inception_crop``, ``horizontal_flip``, ``vertical_flip``,
``rotate``, ``rot90``; see ``cnn_jax.data.augmentations`` for the conventions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy import ndimage

from cnn_jax.data.augmentations._common import (
    Array,
    apply_with_prob,
    check_batch,
    check_key,
    check_prob,
    jit_op,
    randint,
    size_pair,
    to_range,
    uniforms,
    value_range,
)
from cnn_jax.ops._validate import is_int

__all__ = [
    "horizontal_flip",
    "inception_crop",
    "random_crop",
    "rot90",
    "rotate",
    "vertical_flip",
]


@jit_op
def random_crop(
    batch: Array,
    rng: Array,
    *,
    size: int | Sequence[int] | None = None,
    padding: int = 4,
    padding_mode: str = "reflect",
) -> Array:
    """Pads every side by ``padding``, then takes a random ``size`` crop per example.

    The CIFAR recipe (He et al. 2016): ``padding=4`` and crops of the original size.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      size: the crop ``(h, w)`` or an int (default: ``(H, W)``).
      padding: pixels added on each side, non-negative.
      padding_mode: ``'reflect'``, ``'zeros'`` or ``'replicate'``.

    Returns:
      ``(N, h, w, C)``.

    Raises:
      ValueError: for a crop larger than the padded image, a negative padding, an unknown
        padding mode, or a reflect padding not smaller than the image.
    """
    batch = check_batch(batch)
    rng = check_key(rng)
    _, H, W, _ = batch.shape
    h, w = size_pair(size, (H, W))
    if not is_int(padding) or padding < 0:
        raise ValueError(f"`padding` (={padding!r}) must be a non-negative int")
    modes = {"reflect": "reflect", "zeros": "constant", "replicate": "edge"}
    if padding_mode not in modes:
        raise ValueError(
            f"`padding_mode` (={padding_mode!r}) must be one of {', '.join(map(repr, modes))}"
        )
    if padding_mode == "reflect" and padding >= min(H, W):
        raise ValueError(
            f"`padding` (={padding}) must be smaller than the image ({H}x{W}) with "
            "padding_mode='reflect'"
        )
    Hp, Wp = H + 2 * padding, W + 2 * padding
    if h > Hp or w > Wp:
        raise ValueError(f"`size` (={(h, w)}) is larger than the padded image ({Hp}, {Wp})")
    if padding:
        batch = jnp.pad(
            batch, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)), modes[padding_mode]
        )

    u = uniforms(rng, batch.shape[0], 2)
    ys, xs = randint(u[:, 0], Hp - h + 1), randint(u[:, 1], Wp - w + 1)

    def crop(image: Array, y: Array, x: Array) -> Array:
        return lax.dynamic_slice(image, (y, x, 0), (h, w, image.shape[-1]))

    return jax.vmap(crop)(batch, ys, xs)


@jit_op
def inception_crop(
    batch: Array,
    rng: Array,
    *,
    size: int | Sequence[int] | None = None,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    attempts: int = 10,
    method: str = "linear",
) -> Array:
    """Inception-style random-resized crop (Szegedy et al. 2015; torchvision's rules).

    Per example: up to ``attempts`` times, draw an area fraction from ``scale`` and a
    log-uniform aspect ratio (width / height) from ``ratio``; the first crop that fits
    is taken at a uniform position, otherwise the central crop of the whole image with
    the ratio clamped into ``ratio``. The crop is resized to ``size`` with
    ``jax.image.scale_and_translate`` (``jax.image.resize`` of a crop whose position and
    size are traced values).

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      size: the output ``(h, w)`` or an int (default: ``(H, W)``).
      scale: the range of the crop's area as a fraction of the image's.
      ratio: the range of the crop's aspect ratio (width / height).
      attempts: the number of draws before falling back to the central crop.
      method: ``'linear'``, ``'cubic'``, ``'lanczos3'`` or ``'lanczos5'``.

    Returns:
      ``(N, h, w, C)``.

    Raises:
      ValueError: for bad ranges or sizes.
    """
    batch = check_batch(batch)
    rng = check_key(rng)
    _, H, W, C = batch.shape
    oh, ow = size_pair(size, (H, W))
    s_lo, s_hi = value_range(scale, "scale", low=0.0)
    r_lo, r_hi = value_range(ratio, "ratio")
    if s_hi > 1.0 or s_hi <= 0.0:
        raise ValueError(f"`scale` (={scale!r}) must lie in (0, 1]")
    if r_lo <= 0:
        raise ValueError(f"`ratio` (={ratio!r}) must be positive")
    if not is_int(attempts) or attempts < 1:
        raise ValueError(f"`attempts` (={attempts!r}) must be a positive int")
    if method not in ("linear", "cubic", "lanczos3", "lanczos5"):
        raise ValueError(
            f"`method` (={method!r}) must be 'linear', 'cubic', 'lanczos3' or 'lanczos5'"
        )
    area = float(H * W)
    log_r = (math.log(r_lo), math.log(r_hi))
    # The fallback: the whole image, its ratio clamped into [r_lo, r_hi].
    in_ratio = W / H
    if in_ratio < r_lo:
        fb_w, fb_h = W, round(W / r_lo)
    elif in_ratio > r_hi:
        fb_h, fb_w = H, round(H * r_hi)
    else:
        fb_h, fb_w = H, W

    u = uniforms(rng, batch.shape[0], 2 * attempts + 2)
    targets = area * to_range(u[:, :attempts], s_lo, s_hi)
    ratios = jnp.exp(to_range(u[:, attempts : 2 * attempts], *log_r))
    uys, uxs = u[:, -2], u[:, -1]

    def crop(image: Array, target: Array, r: Array, uy: Array, ux: Array) -> Array:
        w = jnp.round(jnp.sqrt(target * r))
        h = jnp.round(jnp.sqrt(target / r))
        ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
        first = jnp.argmax(ok)
        found = ok[first]
        ch = jnp.where(found, h[first], float(fb_h))
        cw = jnp.where(found, w[first], float(fb_w))
        y0 = jnp.where(found, jnp.floor(uy * (H - ch + 1)), jnp.floor((H - ch) / 2))
        x0 = jnp.where(found, jnp.floor(ux * (W - cw + 1)), jnp.floor((W - cw) / 2))
        sy, sx = oh / ch, ow / cw
        return jax.image.scale_and_translate(
            image,
            (oh, ow, C),
            spatial_dims=(0, 1),
            scale=jnp.stack([sy, sx]).astype(image.dtype),
            translation=jnp.stack([-y0 * sy, -x0 * sx]).astype(image.dtype),
            method=method,
            antialias=True,
        )

    return jax.vmap(crop)(batch, targets, ratios, uys, uxs)


@jit_op
def horizontal_flip(batch: Array, rng: Array, *, p: float = 0.5) -> Array:
    """Mirrors each image left-right with probability ``p``.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key (the same key flips the same examples: applying twice is the identity).
      p: the probability.

    Returns:
      ``(N, H, W, C)``.
    """
    batch = check_batch(batch)
    u = uniforms(check_key(rng), batch.shape[0], 1)[:, 0]
    return apply_with_prob(batch[:, :, ::-1], batch, u, check_prob(p))


@jit_op
def vertical_flip(batch: Array, rng: Array, *, p: float = 0.5) -> Array:
    """Mirrors each image top-bottom with probability ``p``.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      p: the probability.

    Returns:
      ``(N, H, W, C)``.
    """
    batch = check_batch(batch)
    u = uniforms(check_key(rng), batch.shape[0], 1)[:, 0]
    return apply_with_prob(batch[:, ::-1], batch, u, check_prob(p))


@jit_op
def rotate(
    batch: Array,
    rng: Array,
    *,
    angle: float | Sequence[float] = 15.0,
    fill: float = 0.0,
    p: float = 1.0,
) -> Array:
    """Rotates each image by a random angle about its centre, bilinear sampling.

    Positive angles turn the picture counter-clockwise as displayed (row 0 at the top),
    as ``jnp.rot90``: an angle of 90 degrees equals ``jnp.rot90`` up to interpolation of
    non-square images. Pixels sampled from outside the image get ``fill``.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      angle: degrees: ``a`` draws uniformly from ``[-a, a]``, ``(lo, hi)`` from that range.
      fill: the value outside the source image.
      p: the probability of rotating an example.

    Returns:
      ``(N, H, W, C)``.
    """
    batch = check_batch(batch)
    rng = check_key(rng)
    lo, hi = value_range(angle, "angle", symmetric=True)
    p = check_prob(p)
    _, H, W, _ = batch.shape
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    yy, xx = jnp.meshgrid(
        jnp.arange(H, dtype=batch.dtype), jnp.arange(W, dtype=batch.dtype), indexing="ij"
    )
    dy, dx = yy - cy, xx - cx
    u = uniforms(rng, batch.shape[0], 2)
    thetas = jnp.deg2rad(to_range(u[:, 0], lo, hi)).astype(batch.dtype)

    def rot(image: Array, theta: Array) -> Array:
        c, s = jnp.cos(theta), jnp.sin(theta)
        src_y = cy + c * dy + s * dx
        src_x = cx - s * dy + c * dx

        def channel(ch: Array) -> Array:
            return ndimage.map_coordinates(ch, [src_y, src_x], order=1, mode="constant", cval=fill)

        return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)

    out = jax.vmap(rot)(batch, thetas)
    return apply_with_prob(out, batch, u[:, 1], p)


@jit_op
def rot90(batch: Array, rng: Array | None = None, *, k: int | None = None) -> Array:
    """Exact rotations by multiples of 90 degrees (``jnp.rot90``, counter-clockwise).

    Args:
      batch: ``(N, H, W, C)``; square unless ``k`` is fixed.
      rng: a key, used when ``k`` is ``None``.
      k: a fixed number of quarter turns for every image, or ``None`` for a uniform
        random ``k`` in ``{0, 1, 2, 3}`` per example.

    Returns:
      The rotated batch (``(N, W, H, C)`` for a fixed odd ``k``).

    Raises:
      ValueError: for random ``k`` on non-square images.
    """
    batch = check_batch(batch)
    if k is not None:
        if not is_int(k):
            raise ValueError(f"`k` (={k!r}) must be an int or None")
        return jnp.rot90(batch, int(k), axes=(1, 2))
    rng = check_key(rng)
    if batch.shape[1] != batch.shape[2]:
        raise ValueError(
            f"random quarter turns need square images, got `batch` shape {tuple(batch.shape)}"
        )
    ks = randint(uniforms(rng, batch.shape[0], 1), 4).reshape(-1, 1, 1, 1)
    out = batch
    for i in range(1, 4):
        out = jnp.where(ks == i, jnp.rot90(batch, i, axes=(1, 2)), out)
    return out
