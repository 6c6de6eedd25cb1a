"""Erasing and noise: ``cutout`` and ``gaussian_noise``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

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

__all__ = ["cutout", "gaussian_noise"]


@jit_op
def cutout(
    batch: Array,
    rng: Array,
    *,
    size: int | Sequence[int] = 16,
    fill: float = 0.0,
    p: float = 1.0,
    inside: bool = False,
) -> Array:
    """Cutout (DeVries & Taylor 2017): fills a ``size`` square with ``fill``, per example.

    As in the paper the square's centre is uniform over the image, so it may be clipped
    by the border; ``inside=True`` keeps it wholly inside (top-left corner uniform over
    the valid positions). All channels are filled.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      size: the square's side, or ``(h, w)``.
      fill: the value written.
      p: the probability of cutting an example.
      inside: keep the patch inside the image.

    Returns:
      ``(N, H, W, C)``.

    Raises:
      ValueError: for a non-positive size, or (``inside``) one larger than the image.
    """
    batch = check_batch(batch)
    rng = check_key(rng)
    _, H, W, _ = batch.shape
    h, w = size_pair(size, (H, W))
    if inside and (h > H or w > W):
        raise ValueError(f"`size` (={size!r}) is larger than the images ({H}x{W})")
    p = check_prob(p)
    u = uniforms(rng, batch.shape[0], 3)
    if inside:
        y0 = randint(u[:, 0], H - h + 1)
        x0 = randint(u[:, 1], W - w + 1)
    else:
        y0 = randint(u[:, 0], H) - h // 2
        x0 = randint(u[:, 1], W) - w // 2
    rows = jnp.arange(H)[None, :]
    cols = jnp.arange(W)[None, :]
    in_y = (rows >= y0[:, None]) & (rows < y0[:, None] + h)
    in_x = (cols >= x0[:, None]) & (cols < x0[:, None] + w)
    hole = (in_y[:, :, None] & in_x[:, None, :])[..., None]
    out = jnp.where(hole, jnp.asarray(fill, batch.dtype), batch)
    return apply_with_prob(out, batch, u[:, 2], p)


@jit_op
def gaussian_noise(
    batch: Array,
    rng: Array,
    *,
    std: float | Sequence[float] = 0.1,
    mean: float = 0.0,
    clip: Sequence[float] | None = None,
) -> Array:
    """Adds i.i.d. Gaussian noise ``mean + std * N(0, 1)`` to every value.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      std: the standard deviation, or a ``(low, high)`` range drawn per example.
      mean: the noise's mean.
      clip: an optional ``(low, high)`` to clip the result to (e.g. ``(0, 1)``).

    Returns:
      ``(N, H, W, C)``.

    Raises:
      ValueError: for a negative ``std`` or a bad ``clip``.
    """
    batch = check_batch(batch)
    rng = check_key(rng)
    lo, hi = value_range(std, "std", low=0.0)
    if clip is not None:
        clip = value_range(clip, "clip")
    k_std, k_noise = jax.random.split(rng)  # the noise: a normal draw of its own
    n = batch.shape[0]
    sigma = to_range(uniforms(k_std, n, 1), lo, hi).reshape(n, 1, 1, 1) if hi > lo else lo
    # Drawn flat (see `uniforms`).
    noise = jax.random.normal(k_noise, (math.prod(batch.shape),), batch.dtype)
    noise = noise.reshape(batch.shape)
    out = batch + (mean + sigma * noise).astype(batch.dtype)
    return jnp.clip(out, *clip) if clip is not None else out
