"""U-Net (Ronneberger, Fischer & Brox 2015): a contracting and an expanding path with skips.

Contracting path: ``len(features) - 1`` levels of two 3x3 convolutions + ReLU and a 2x2
max pool, doubling the channels (64, 128, 256, 512), then two 3x3 convolutions at the
bottom (1024). Expanding path: at each level a 2x2 transposed convolution of stride 2
that halves the channels ("up-convolution"), concatenation with the contracting path's
maps of that level, and two 3x3 convolutions + ReLU. A 1x1 convolution gives the class
scores. 31,030,658 parameters for the paper's one input channel and two classes.

``padding='VALID'`` is the paper's: every 3x3 convolution loses a 2-pixel border, so the
skip maps are centre-cropped to the expanding path's size, and the output is smaller
than the input (572x572 -> 388x388); a size works only if every map that is pooled
has an even size (:func:`unet_output_size`; for depth 4, the sizes ``16 k + 124``).
``padding='SAME'`` keeps the size; it must then be divisible by ``2 ** depth``. A size
that does not work raises a ``ValueError`` naming the nearest sizes that do.
``batch_norm`` adds batch normalization after every 3x3 convolution (not in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv, ConvTranspose
from cnn_jax.models._common import (
    Array,
    check_choice,
    check_images,
    check_positive_int,
    check_positive_ints,
)

__all__ = ["UNET_FEATURES", "UNet", "unet_output_size", "unet_valid_sizes"]

#: The paper's widths, from the top level to the bottom.
UNET_FEATURES: tuple[int, ...] = (64, 128, 256, 512, 1024)


def unet_output_size(size: int, depth: int = 4, padding: str = "VALID") -> int | None:
    """The output size of a U-Net of ``depth`` poolings for an input ``size``, or None.

    Args:
      size: the input height or width.
      depth: the number of 2x2 poolings (``len(features) - 1``).
      padding: ``'VALID'`` (the paper's) or ``'SAME'``.

    Returns:
      The output size, or None if the size does not work (an odd map is pooled, a map
      vanishes, or, with 'SAME', the size is not divisible by ``2 ** depth``).
    """
    if padding == "SAME":
        return size if size > 0 and size % 2**depth == 0 else None
    s = size
    for _ in range(depth):
        s -= 4
        if s < 2 or s % 2:
            return None
        s //= 2
    s -= 4
    if s < 1:
        return None
    for _ in range(depth):
        s = 2 * s - 4
        if s < 1:
            return None
    return s


def unet_valid_sizes(size: int, depth: int = 4, padding: str = "VALID") -> list[int]:
    """The valid input sizes nearest ``size``: the largest below it and the smallest above."""
    out = []
    below = next((s for s in range(size - 1, 0, -1) if unet_output_size(s, depth, padding)), None)
    if below is not None:
        out.append(below)
    above = size + 1
    while unet_output_size(above, depth, padding) is None:
        above += 1
    return [*out, above]


def _centre_crop(x: Array, h: int, w: int) -> Array:
    top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
    return x[:, top : top + h, left : left + w]


class UNet(nn.Module):
    """U-Net (see the module docstring).

    Attributes:
      num_classes: output classes.
      features: widths from the top level to the bottom (the paper's by default).
      padding: ``'VALID'`` (the paper's, output smaller than input) or ``'SAME'``.
      batch_norm: batch norm after each 3x3 convolution.
      dtype: computation dtype.
    """

    num_classes: int = 2
    features: Sequence[int] = UNET_FEATURES
    padding: str = "VALID"
    batch_norm: bool = False
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        feats = check_positive_ints(self.features, "features")
        if len(feats) < 2:
            raise ValueError(f"`features` (={self.features!r}) needs at least two levels")
        check_choice(self.padding, "padding", ("VALID", "SAME"))
        super().__post_init__()

    def _double_conv(self, x: Array, width: int, name: str, train: bool) -> Array:
        for j in range(2):
            x = Conv(
                width,
                3,
                padding=self.padding,
                use_bias=not self.batch_norm,
                kernel_init="he_normal",  # the paper's N(0, sqrt(2 / fan_in))
                dtype=self.dtype,
                name=f"{name}_{j + 1}",
            )(x)
            if self.batch_norm:
                x = BatchNorm(dtype=self.dtype, name=f"{name}_{j + 1}_bn")(x, train=train)
            x = nn.relu(x)
        return x

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Dense class scores.

        Args:
          x: ``(N, H, W, C)`` images whose sizes work (see :func:`unet_output_size`).
          train: batch statistics in training (with ``batch_norm``).

        Returns:
          ``(logits, features)``: logits ``(N, H', W', num_classes)`` (``H' = H`` with
          'SAME'); features ``down{i}`` and ``up{i}`` (each level's maps) and ``bottom``.

        Raises:
          ValueError: for a wrong input rank or a size that does not work, naming the
            nearest sizes that do.
        """
        feats = tuple(self.features)
        depth = len(feats) - 1
        shape = check_images(x, "UNet")
        for name, size in (("height", shape[1]), ("width", shape[2])):
            if unet_output_size(size, depth, self.padding) is None:
                rule = (
                    f"divisible by {2**depth}"
                    if self.padding == "SAME"
                    else "such that every pooled map has an even size"
                )
                raise ValueError(
                    f"UNet with padding={self.padding!r} and depth {depth} needs `x` {name} "
                    f"{rule}, got {size} (shape {shape}); nearest valid sizes: "
                    f"{unet_valid_sizes(size, depth, self.padding)}"
                )
        f: dict[str, Array] = {}
        skips = []
        for i, width in enumerate(feats[:-1]):
            x = self._double_conv(x, width, f"down{i + 1}", train)
            f[f"down{i + 1}"] = x
            skips.append(x)
            x = ops.max_pool(x, 2)
        f["bottom"] = x = self._double_conv(x, feats[-1], "bottom", train)
        for i in reversed(range(depth)):
            x = ConvTranspose(
                feats[i],
                2,
                strides=2,
                kernel_init="he_normal",
                dtype=self.dtype,
                name=f"upconv{i + 1}",
            )(x)
            skip = _centre_crop(skips[i], x.shape[1], x.shape[2])
            x = jnp.concatenate([skip.astype(x.dtype), x], axis=-1)
            x = self._double_conv(x, feats[i], f"up{i + 1}", train)
            f[f"up{i + 1}"] = x
        logits = Conv(self.num_classes, 1, dtype=self.dtype, name="classifier")(x)
        f["logits"] = logits
        return logits, f
