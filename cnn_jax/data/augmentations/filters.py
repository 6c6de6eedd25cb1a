"""Filters: Gaussian blur and Sobel edges, as depthwise convolutions (``cnn_jax.ops``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    value_range,
)
from cnn_jax.data.augmentations.color import rgb_to_grayscale
from cnn_jax.ops import depthwise_conv
from cnn_jax.ops._validate import is_int

__all__ = ["gaussian_blur", "sobel"]


def _depthwise(batch: Array, taps: Array, axis: int, padding_mode: str) -> Array:
    """Convolves every (example, channel) plane with its own 1-D kernel along ``axis``.

    ``taps``: ``(N, k)``. Examples are folded into channels so one depthwise convolution
    (``cnn_jax.ops.depthwise_conv``) filters the whole batch.
    """
    n, H, W, C = batch.shape
    k = taps.shape[-1]
    x = jnp.transpose(batch, (1, 2, 0, 3)).reshape(1, H, W, n * C)
    kernel = jnp.repeat(taps, C, axis=0).T  # (k, n * C), channel n * C + c
    kernel = kernel.reshape((k, 1, 1, n * C) if axis == 1 else (1, k, 1, n * C))
    y = depthwise_conv(x, kernel.astype(x.dtype), padding="SAME", padding_mode=padding_mode)
    return jnp.transpose(y.reshape(H, W, n, C), (2, 0, 1, 3))


@jit_op
def gaussian_blur(
    batch: Array,
    rng: Array,
    *,
    sigma: float | Sequence[float] = (0.1, 2.0),
    kernel_size: int | None = None,
    p: float = 1.0,
    padding_mode: str = "reflect",
) -> Array:
    """Separable Gaussian blur with a random ``sigma`` (pixels) per example.

    The kernel weights ``exp(-x^2 / (2 sigma^2))`` for ``x`` in ``[-r, r]`` are normalized
    to sum to 1, so constant images are unchanged; rows then columns are filtered with
    ``cnn_jax.ops.depthwise_conv``.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      sigma: the standard deviation, or a ``(low, high)`` range drawn per example.
      kernel_size: odd taps per axis (default ``2 * ceil(3 * max sigma) + 1``, capped to
        what ``padding_mode`` allows for the image).
      p: the probability of blurring an example.
      padding_mode: border handling: ``'reflect'``, ``'replicate'``, ``'circular'`` or
        ``'zeros'``.

    Returns:
      ``(N, H, W, C)``.

    Raises:
      ValueError: for a non-positive sigma or an even / too large kernel size.
    """
    batch = check_batch(batch)
    rng = check_key(rng)
    lo, hi = value_range(sigma, "sigma")
    if lo <= 0:
        raise ValueError(f"`sigma` (={sigma!r}) must be positive")
    _, H, W, _ = batch.shape
    max_radius = min(H, W) - 1 if padding_mode == "reflect" else max(H, W)
    if kernel_size is None:
        radius = min(math.ceil(3 * hi), max_radius)
    else:
        if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` (={kernel_size!r}) must be a positive odd int")
        radius = kernel_size // 2
        if radius > max_radius:
            raise ValueError(
                f"`kernel_size` (={kernel_size}) is too large for {H}x{W} images with "
                f"padding_mode={padding_mode!r}"
            )
    p = check_prob(p)
    u = uniforms(rng, batch.shape[0], 2)
    n = batch.shape[0]
    sig = to_range(u[:, :1], lo, hi) if hi > lo else jnp.full((n, 1), lo)
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)[None, :]
    taps = jnp.exp(-0.5 * (x / sig) ** 2)
    taps = taps / jnp.sum(taps, axis=1, keepdims=True)
    out = _depthwise(_depthwise(batch, taps, 1, padding_mode), taps, 2, padding_mode)
    return apply_with_prob(out, batch, u[:, 1], p)


@jit_op
def sobel(
    batch: Array,
    rng: Array | None = None,
    *,
    output: str = "magnitude",
    grayscale: bool = False,
    normalize: bool = True,
    padding_mode: str = "replicate",
) -> Array:
    """Sobel filtering (deterministic; ``rng`` is ignored), per channel.

    ``gx`` is the derivative along the width (left to right), ``gy`` along the height
    (top to bottom): the kernels ``[1, 2, 1]^T [-1, 0, 1]`` and its transpose, divided by
    8 when ``normalize`` so that a ramp of slope 1 has gradient 1. Computed with
    ``cnn_jax.ops.depthwise_conv``; ``'replicate'`` padding makes constant images give
    zero everywhere.

    Args:
      batch: ``(N, H, W, C)``.
      rng: ignored.
      output: ``'magnitude'`` (``sqrt(gx^2 + gy^2)``, ``(N, H, W, C)``) or
        ``'gradients'`` (``concat([gx, gy], -1)``, ``(N, H, W, 2C)``).
      grayscale: convert RGB to luma first (then ``C = 1``).
      normalize: divide by 8.
      padding_mode: border handling, as in ``cnn_jax.ops.conv``.

    Returns:
      The edge magnitude or the two gradients.

    Raises:
      ValueError: for an unknown ``output``.
    """
    del rng
    batch = check_batch(batch)
    if output not in ("magnitude", "gradients"):
        raise ValueError(f"`output` (={output!r}) must be 'magnitude' or 'gradients'")
    if grayscale:
        batch = rgb_to_grayscale(batch, keep_channels=False)
    C = batch.shape[-1]
    smooth = jnp.array([1.0, 2.0, 1.0])
    diff = jnp.array([-1.0, 0.0, 1.0])
    kx = jnp.outer(smooth, diff)  # (3, 3): rows smooth, columns differentiate
    ky = kx.T
    if normalize:
        kx, ky = kx / 8.0, ky / 8.0
    # Depthwise with multiplier 2: output channel 2c + j is input channel c's j-th filter.
    kernel = jnp.stack([kx, ky], axis=-1)  # (3, 3, 2)
    kernel = jnp.tile(kernel, (1, 1, C))[:, :, None, :].astype(batch.dtype)  # (3, 3, 1, 2C)
    g = depthwise_conv(batch, kernel, padding="SAME", padding_mode=padding_mode)
    gx, gy = g[..., 0::2], g[..., 1::2]
    if output == "gradients":
        return jnp.concatenate([gx, gy], axis=-1)
    return jnp.sqrt(gx * gx + gy * gy)
