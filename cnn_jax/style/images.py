"""Reading and writing RGB images in [0, 1] for style transfer (Pillow)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["load_image", "save_image"]


def load_image(path: str | os.PathLike, max_size: int | None = None) -> np.ndarray:
    """Reads an image file as ``(H, W, 3)`` float32 RGB in [0, 1].

    Args:
      path: any format Pillow reads (JPEG, PNG, ...); grey or RGBA images become RGB.
      max_size: if given, resized (bicubic) so that the longer side is ``max_size``.

    Raises:
      FileNotFoundError: for a missing file.
      ValueError: naming the file for one that is not a readable image, or a bad
        ``max_size``.
    """
    from PIL import Image, UnidentifiedImageError

    if max_size is not None and (
        isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1
    ):
        raise ValueError(f"`max_size` (={max_size!r}) must be a positive int or None")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if max_size is not None:
                scale = max_size / max(im.size)
                size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
                im = im.resize(size, Image.BICUBIC)
            return np.asarray(im, np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{str(path)!r} is not a readable image: {e}") from e


def save_image(path: str | os.PathLike, image: Any) -> None:
    """Writes ``(H, W, 3)`` RGB in [0, 1] (clipped) as an 8-bit image (format by suffix).

    Raises:
      ValueError: for an array that is not ``(H, W, 3)``.
    """
    from PIL import Image

    x = np.asarray(image, np.float32)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"`image` must be (H, W, 3), got shape {x.shape}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)).save(path)
