"""Colour augmentations and conversions: ``color_jitter``, ``color_drop``, RGB/HSV/luma.

Images are RGB in ``[0, 1]``; the jitter and drop ops clip their results to that range.
"""

from __future__ import annotations

import jax.numpy as jnp

from cnn_jax.data.augmentations._common import (
    Array,
    apply_with_prob,
    check_batch,
    check_key,
    check_prob,
    jit_op,
    to_range,
    uniforms,
)

__all__ = ["color_drop", "color_jitter", "hsv_to_rgb", "rgb_to_grayscale", "rgb_to_hsv"]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL and torchvision


def rgb_to_grayscale(images: Array, keep_channels: bool = True) -> Array:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of ``(..., 3)`` images.

    Args:
      images: ``(..., 3)`` RGB.
      keep_channels: repeat the luma in 3 channels (else one channel).

    Returns:
      ``(..., 3)`` or ``(..., 1)``.

    Raises:
      ValueError: if the last axis is not 3.
    """
    if images.shape[-1] != 3:
        raise ValueError(f"`images` must have 3 (RGB) channels, got shape {tuple(images.shape)}")
    gray = jnp.tensordot(images, jnp.asarray(_LUMA, images.dtype), axes=[[-1], [0]])[..., None]
    return jnp.broadcast_to(gray, images.shape) if keep_channels else gray


def rgb_to_hsv(images: Array) -> Array:
    """RGB in ``[0, 1]`` to HSV (hue in ``[0, 1)``), elementwise over ``(..., 3)``.

    Args:
      images: ``(..., 3)`` RGB.

    Returns:
      ``(..., 3)`` HSV.
    """
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    maxc = jnp.max(images, axis=-1)
    minc = jnp.min(images, axis=-1)
    delta = maxc - minc
    safe = jnp.where(delta > 0, delta, 1.0)
    s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return jnp.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(images: Array) -> Array:
    """HSV (hue in ``[0, 1)``) to RGB, the inverse of :func:`rgb_to_hsv`.

    Args:
      images: ``(..., 3)`` HSV.

    Returns:
      ``(..., 3)`` RGB.
    """
    h, s, v = images[..., 0], images[..., 1], images[..., 2]
    h6 = (h % 1.0) * 6.0
    i = jnp.floor(h6)
    f = h6 - i
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    i = i.astype(jnp.int32) % 6
    r = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [v, q, p, p, t], v)
    g = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [t, v, v, q, p], p)
    b = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [p, p, t, v, v], q)
    return jnp.stack([r, g, b], axis=-1)


def _blend(a: Array, b: Array, f: Array) -> Array:
    """``clip(b + f (a - b))`` in [0, 1]: ``f = 1`` gives ``a``, ``f = 0`` gives ``b``."""
    return jnp.clip(b + f * (a - b), 0.0, 1.0)


def _adjust_brightness(x: Array, f: Array) -> Array:
    return jnp.clip(x * f, 0.0, 1.0)


def _adjust_contrast(x: Array, f: Array) -> Array:
    """Blends each image of ``(N, H, W, C)`` with its mean luma."""
    gray = rgb_to_grayscale(x, keep_channels=False) if x.shape[-1] == 3 else x
    return _blend(x, jnp.mean(gray, axis=(1, 2, 3), keepdims=True), f)


def _adjust_saturation(x: Array, f: Array) -> Array:
    return _blend(x, rgb_to_grayscale(x), f)


def _adjust_hue(x: Array, delta: Array) -> Array:
    hsv = rgb_to_hsv(x)
    hue = (hsv[..., 0] + delta[..., 0]) % 1.0  # delta: (N, 1, 1, 1)
    hsv = jnp.stack([hue, hsv[..., 1], hsv[..., 2]], axis=-1)
    return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


@jit_op
def color_jitter(
    batch: Array,
    rng: Array,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 1.0,
    random_order: bool = True,
) -> Array:
    """Random brightness, contrast, saturation and hue (torchvision's ``ColorJitter``).

    Factors are drawn per example: brightness, contrast and saturation from
    ``[max(0, 1 - v), 1 + v]``, the hue shift from ``[-hue, hue]`` (a fraction of the hue
    circle, at most 0.5). Brightness multiplies; contrast blends with the image's mean
    luma; saturation blends with the grayscale image; hue shifts in HSV. Results are
    clipped to ``[0, 1]``.

    Args:
      batch: ``(N, H, W, C)`` in ``[0, 1]``; ``C = 3`` unless saturation and hue are 0.
      rng: a key.
      brightness: strength, non-negative.
      contrast: strength, non-negative.
      saturation: strength, non-negative.
      hue: strength in ``[0, 0.5]``.
      p: the probability of jittering an example (SimCLR uses 0.8).
      random_order: apply the four in a random order per example (as torchvision),
        else in the order brightness, contrast, saturation, hue.

    Returns:
      ``(N, H, W, C)``.

    Raises:
      ValueError: for negative strengths, ``hue > 0.5``, or saturation/hue on images
        that are not RGB.
    """
    batch = check_batch(batch)
    rng = check_key(rng)
    for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ValueError(f"`{name}` (={v!r}) must be a non-negative number")
    if isinstance(hue, bool) or not isinstance(hue, int | float) or not 0 <= hue <= 0.5:
        raise ValueError(f"`hue` (={hue!r}) must be a number in [0, 0.5]")
    if batch.shape[-1] != 3 and (saturation or hue):
        raise ValueError(
            f"`saturation` (={saturation}) and `hue` (={hue}) need RGB images, got `batch` "
            f"shape {tuple(batch.shape)}; set them to 0"
        )
    p = check_prob(p)
    n = batch.shape[0]
    shape = (n, 1, 1, 1)
    u = uniforms(rng, n, 9)  # 3 factors, the hue shift, 4 for the order, p
    factors = [
        to_range(u[:, i], max(0.0, 1.0 - v), 1.0 + v).astype(batch.dtype).reshape(shape)
        for i, v in enumerate((brightness, contrast, saturation))
    ]
    delta = to_range(u[:, 3], -hue, hue).astype(batch.dtype).reshape(shape)
    ops = [
        lambda x: _adjust_brightness(x, factors[0]),
        lambda x: _adjust_contrast(x, factors[1]),
        lambda x: _adjust_saturation(x, factors[2]),
        lambda x: _adjust_hue(x, delta),
    ]
    active = [i for i, v in enumerate((brightness, contrast, saturation, hue)) if v]
    out = batch
    if not random_order:
        for i in active:
            out = ops[i](out)
    else:
        # A random permutation of the active ops per example: at step t, apply the op
        # whose rank (position in the example's random order) is t.
        ranks = jnp.argsort(jnp.argsort(u[:, 4 : 4 + len(active)], axis=1), axis=1)
        for t in range(len(active)):
            for j, i in enumerate(active):
                out = jnp.where((ranks[:, j] == t).reshape(shape), ops[i](out), out)
    return apply_with_prob(out, batch, u[:, 8], p)


@jit_op
def color_drop(batch: Array, rng: Array, *, p: float = 0.2) -> Array:
    """Converts each image to grayscale (kept in 3 channels) with probability ``p``.

    Args:
      batch: ``(N, H, W, 3)``.
      rng: a key.
      p: the probability (SimCLR: 0.2).

    Returns:
      ``(N, H, W, 3)``.
    """
    batch = check_batch(batch)
    u = uniforms(check_key(rng), batch.shape[0], 1)[:, 0]
    return apply_with_prob(rgb_to_grayscale(batch), batch, u, check_prob(p))
