"""Image preprocessing: scaling, per-channel standardization, mean subtraction, padding.

Every function works on numpy arrays and on JAX arrays (inside ``jit`` too), channels
last. Statistics are on images scaled to ``[0, 1]`` (uint8 / 255).

* Per-channel standardization with the usual constants (:data:`DATASET_STATS`).
* Per-channel mean subtraction (VGG: Simonyan & Zisserman 2015) and mean-image
  subtraction (AlexNet: Krizhevsky et al. 2012), the means computed from the training
  set with :func:`channel_mean` and :func:`mean_image`.
* Zero padding of MNIST's 28x28 to LeNet-5's 32x32 input (:func:`pad_images`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from cnn_jax.ops._validate import check_array_rank, is_int

__all__ = [
    "DATASET_STATS",
    "channel_mean",
    "channel_std",
    "mean_image",
    "normalize",
    "pad_images",
    "standardize",
    "subtract_mean",
    "to_float",
]

Array = Any

#: Per-channel ``(mean, std)`` of the training images in ``[0, 1]``. MNIST: the usual
#: 0.1307 / 0.3081. CIFAR-10: the original pixels' mean and (true per-pixel) std; the
#: JPEG re-encoded local copy measures (0.4917, 0.4826, 0.4472) for the mean.
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # The constants torchvision's and Keras' ImageNet models are trained with.
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "synthetic": ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}


def _xp(x: Array):
    return np if isinstance(x, np.ndarray | np.generic) else jnp


def to_float(images: Array) -> Array:
    """Images as float32 in ``[0, 1]``: uint8 divided by 255, floats cast to float32.

    Args:
      images: an integer (uint8) or floating array.

    Returns:
      A float32 array of the same shape.
    """
    xp = _xp(images)
    if xp.issubdtype(images.dtype, xp.integer):
        return images.astype(xp.float32) / xp.float32(255.0)
    return images.astype(xp.float32)


def normalize(images: Array, mean: Sequence[float] | Array, std: Sequence[float] | Array) -> Array:
    """``(to_float(images) - mean) / std``, broadcast over the trailing axes.

    Args:
      images: ``(..., C)`` uint8 or float images.
      mean: ``(C,)`` or a mean image ``(H, W, C)``, in ``[0, 1]`` units.
      std: as ``mean``.

    Returns:
      The float32 normalized images.

    Raises:
      ValueError: if a statistic does not broadcast against ``images`` or ``std``
        has a non-positive entry.
    """
    x = to_float(images)
    xp = _xp(x)
    m = np.asarray(mean, np.float32)
    s = np.asarray(std, np.float32)
    for arg, v in (("mean", m), ("std", s)):
        if v.ndim > x.ndim or tuple(x.shape[x.ndim - v.ndim :]) != tuple(v.shape):
            raise ValueError(
                f"`{arg}` of shape {v.shape} does not match the trailing axes of `images` "
                f"{tuple(x.shape)}"
            )
    if np.any(s <= 0):
        raise ValueError(f"`std` (={s.tolist()}) must be positive")
    return (x - xp.asarray(m)) / xp.asarray(s)


def standardize(images: Array, dataset: str) -> Array:
    """Per-channel standardization with :data:`DATASET_STATS`.

    Args:
      images: ``(..., C)`` uint8 or float images of that data set.
      dataset: ``'mnist'`` or ``'cifar10'``.

    Returns:
      The float32 standardized images.

    Raises:
      ValueError: for a data set without constants, or a channel mismatch.
    """
    if dataset not in DATASET_STATS:
        raise ValueError(
            f"`dataset` (={dataset!r}) has no standard statistics; known: "
            f"{', '.join(map(repr, DATASET_STATS))} (compute them with channel_mean/channel_std)"
        )
    mean, std = DATASET_STATS[dataset]
    return normalize(images, mean, std)


def _check_images(images: Array) -> None:
    check_array_rank(images, "images", 4, "(N, H, W, C)")
    if images.shape[0] == 0:
        raise ValueError("`images` must hold at least one image, got shape (0, ...)")


def _chunked_sum(images: np.ndarray, axes: tuple[int, ...], square: bool = False) -> np.ndarray:
    total = 0.0
    for start in range(0, images.shape[0], 4096):
        chunk = to_float(np.asarray(images[start : start + 4096])).astype(np.float64)
        total = total + np.sum(chunk * chunk if square else chunk, axis=axes)
    return total


def channel_mean(images: Array) -> np.ndarray:
    """The per-channel mean (VGG-style) of training images, in ``[0, 1]`` units.

    Args:
      images: ``(N, H, W, C)`` uint8 or float images.

    Returns:
      A float32 ``(C,)`` array.

    Raises:
      ValueError: if ``images`` is not a non-empty rank-4 array.
    """
    _check_images(images)
    n = images.shape[0] * images.shape[1] * images.shape[2]
    return (_chunked_sum(images, (0, 1, 2)) / n).astype(np.float32)


def channel_std(images: Array) -> np.ndarray:
    """The per-channel standard deviation of training images, in ``[0, 1]`` units.

    Args:
      images: ``(N, H, W, C)`` uint8 or float images.

    Returns:
      A float32 ``(C,)`` array (population standard deviation over all pixels).

    Raises:
      ValueError: if ``images`` is not a non-empty rank-4 array.
    """
    _check_images(images)
    n = images.shape[0] * images.shape[1] * images.shape[2]
    mean = _chunked_sum(images, (0, 1, 2)) / n
    sq = _chunked_sum(images, (0, 1, 2), square=True) / n
    return np.sqrt(np.maximum(sq - mean**2, 0.0)).astype(np.float32)


def mean_image(images: Array) -> np.ndarray:
    """The mean image (AlexNet-style) of training images, in ``[0, 1]`` units.

    Args:
      images: ``(N, H, W, C)`` uint8 or float images.

    Returns:
      A float32 ``(H, W, C)`` array.

    Raises:
      ValueError: if ``images`` is not a non-empty rank-4 array.
    """
    _check_images(images)
    return (_chunked_sum(images, (0,)) / images.shape[0]).astype(np.float32)


def subtract_mean(images: Array, mean: Array) -> Array:
    """``to_float(images) - mean``: a per-channel mean ``(C,)`` or a mean image ``(H, W, C)``.

    Args:
      images: ``(..., H, W, C)`` uint8 or float images.
      mean: from :func:`channel_mean` or :func:`mean_image`.

    Returns:
      The float32 centred images.

    Raises:
      ValueError: if ``mean`` does not match the trailing axes of ``images``.
    """
    m = np.asarray(mean, np.float32)
    return normalize(images, m, np.ones_like(m))


def pad_images(images: Array, size: int | Sequence[int] = 32, value: float = 0) -> Array:
    """Pads ``(N, H, W, C)`` images symmetrically to ``size`` (e.g. MNIST 28 -> 32 for LeNet-5).

    When ``size - H`` is odd the extra row goes at the bottom (columns: right).

    Args:
      images: ``(N, H, W, C)``.
      size: the output ``H' = W'`` or ``(H', W')``, each at least the input's.
      value: the fill value (0: MNIST's background).

    Returns:
      ``(N, H', W', C)``, same dtype.

    Raises:
      ValueError: if ``size`` is smaller than the images.
    """
    check_array_rank(images, "images", 4, "(N, H, W, C)")
    if is_int(size):
        size = (int(size), int(size))
    if len(size) != 2 or not all(is_int(s) for s in size):
        raise ValueError(f"`size` (={size!r}) must be an int or a pair of ints")
    h, w = images.shape[1:3]
    if size[0] < h or size[1] < w:
        raise ValueError(f"`size` (={tuple(size)}) must be at least the image size ({h}, {w})")
    dh, dw = size[0] - h, size[1] - w
    pads = ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0))
    xp = _xp(images)
    return xp.pad(images, pads, constant_values=xp.asarray(value, images.dtype))
