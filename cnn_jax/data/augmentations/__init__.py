"""Data augmentation as jit-able JAX functions on device batches.

Every augmentation has the signature ``op(batch, rng, **kwargs) -> batch``: ``batch`` is
a float ``(N, H, W, C)`` array (images in ``[0, 1]`` for the colour ops), ``rng`` a
``jax.random`` key (ignored by the deterministic ops, which accept ``None``). Randomness
is per example: each image gets its own crop, flip, angle, ..., all drawn from ``rng``.
The keyword arguments are static (Python values): each op is compiled once per input
shape and keyword arguments, and inlined inside an outer ``jit``.

Configs name augmentations: :func:`get_augmentation` builds one from a name and its
keyword arguments, :func:`augment` applies a list of ``(name, kwargs)``::

    ops = [("random_crop", {"padding": 4}), ("horizontal_flip", {})]
    x = augment(to_float(batch["image"]), rng, ops)   # inside the jitted train step

Names: ``random_crop``, ``inception_crop``, ``horizontal_flip``, ``vertical_flip``,
``color_jitter``, ``color_drop``, ``rotate``, ``rot90``, ``cutout``, ``gaussian_noise``,
``gaussian_blur``, ``sobel`` (see :func:`augmentation_names`).

Modules: ``geometric`` (crops, flips, rotations), ``color`` (jitter, grayscale, HSV),
``noise`` (cutout, Gaussian noise), ``filters`` (blur, Sobel), ``registry`` (names).
"""

from cnn_jax.data.augmentations.color import (
    color_drop,
    color_jitter,
    hsv_to_rgb,
    rgb_to_grayscale,
    rgb_to_hsv,
)
from cnn_jax.data.augmentations.filters import gaussian_blur, sobel
from cnn_jax.data.augmentations.geometric import (
    horizontal_flip,
    inception_crop,
    random_crop,
    rot90,
    rotate,
    vertical_flip,
)
from cnn_jax.data.augmentations.noise import cutout, gaussian_noise
from cnn_jax.data.augmentations.registry import (
    AUGMENTATIONS,
    augment,
    augmentation_names,
    get_augmentation,
    needs_unit_range,
    register_augmentation,
)

__all__ = [
    "AUGMENTATIONS",
    "augment",
    "augmentation_names",
    "color_drop",
    "color_jitter",
    "cutout",
    "gaussian_blur",
    "gaussian_noise",
    "get_augmentation",
    "horizontal_flip",
    "hsv_to_rgb",
    "inception_crop",
    "needs_unit_range",
    "random_crop",
    "register_augmentation",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "rot90",
    "rotate",
    "sobel",
    "vertical_flip",
]
