"""Augmentations by name: the registry, ``get_augmentation`` and ``augment``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax

from cnn_jax.data.augmentations._common import Array, Augmentation
from cnn_jax.data.augmentations.color import color_drop, color_jitter
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

__all__ = [
    "AUGMENTATIONS",
    "augment",
    "augmentation_names",
    "get_augmentation",
    "needs_unit_range",
    "register_augmentation",
]


AUGMENTATIONS: dict[str, Augmentation] = {
    "random_crop": random_crop,
    "inception_crop": inception_crop,
    "horizontal_flip": horizontal_flip,
    "vertical_flip": vertical_flip,
    "color_jitter": color_jitter,
    "color_drop": color_drop,
    "rotate": rotate,
    "rot90": rot90,
    "cutout": cutout,
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "sobel": sobel,
}

_ALIASES = {
    "flip": "horizontal_flip",
    "random_grayscale": "color_drop",
    "crop": "random_crop",
    "random_resized_crop": "inception_crop",
    "blur": "gaussian_blur",
    "noise": "gaussian_noise",
}


def augmentation_names() -> tuple[str, ...]:
    """The registered augmentation names (aliases not included)."""
    return tuple(AUGMENTATIONS)


def register_augmentation(name: str, fn: Augmentation) -> None:
    """Registers ``fn(batch, rng, **kwargs)`` under ``name``.

    Args:
      name: the new name.
      fn: the augmentation.

    Raises:
      ValueError: if the name is taken.
    """
    if name in AUGMENTATIONS or name in _ALIASES:
        raise ValueError(f"augmentation `name` (={name!r}) is already registered")
    AUGMENTATIONS[name] = fn


def get_augmentation(name: str, **kwargs: Any) -> Callable[[Array, Array], Array]:
    """An augmentation by name, with its keyword arguments bound.

    Args:
      name: a name from :func:`augmentation_names` (or an alias: ``flip``, ``crop``,
        ``random_resized_crop``, ``random_grayscale``, ``blur``, ``noise``).
      **kwargs: the augmentation's keyword arguments.

    Returns:
      ``fn(batch, rng) -> batch``.

    Raises:
      ValueError: for an unknown name.
      TypeError: for a keyword argument the augmentation does not take.
    """
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in AUGMENTATIONS:
        known = ", ".join(repr(n) for n in (*AUGMENTATIONS, *_ALIASES))
        raise ValueError(f"unknown augmentation `name` (={name!r}); known: {known}")
    fn = AUGMENTATIONS[key]
    params = inspect.signature(fn).parameters
    allowed = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"augmentation {key!r} got unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(map(repr, allowed)) or 'none'}"
        )
    return functools.partial(fn, **kwargs)


def needs_unit_range(name: str, **kwargs: Any) -> bool:
    """Whether an augmentation assumes images in ``[0, 1]`` and clips its result to it.

    ``color_jitter`` does, and ``gaussian_noise`` when given a ``clip``: applied to
    normalized images, they would flatten them.

    Args:
      name: an augmentation name or alias.
      **kwargs: its keyword arguments.

    Returns:
      True for the ops above.
    """
    key = _ALIASES.get(name, name)
    return key == "color_jitter" or (key == "gaussian_noise" and kwargs.get("clip") is not None)


def augment(
    batch: Array,
    rng: Array,
    ops: Sequence[tuple[str, dict[str, Any]] | str | Callable[[Array, Array], Array]],
) -> Array:
    """Applies a list of augmentations in order, each with its own key (``fold_in(rng, i)``).

    Args:
      batch: ``(N, H, W, C)`` float.
      rng: a key.
      ops: ``(name, kwargs)`` pairs, bare names (default arguments) or callables
        ``fn(batch, rng)``.

    Returns:
      The augmented batch.

    Raises:
      ValueError, TypeError: for a malformed entry, and as :func:`get_augmentation`.
    """
    for i, op in enumerate(ops):
        if isinstance(op, str):
            fn = get_augmentation(op)
        elif callable(op):
            fn = op
        elif isinstance(op, Sequence) and len(op) == 2 and isinstance(op[0], str):
            fn = get_augmentation(op[0], **dict(op[1] or {}))
        else:
            raise ValueError(
                f"`ops[{i}]` (={op!r}) must be a (name, kwargs) pair, a name or a callable"
            )
        batch = fn(batch, jax.random.fold_in(rng, i))
    return batch
