"""Small modern CNNs for MNIST-sized inputs.

``CNNMnist``: two blocks of two 3x3 convolutions (32, then 64 channels) with batch
normalization and ReLU, each followed by 2x2 max pooling, then a 256-unit hidden
layer with dropout and a linear output: the kind of network that reaches about 99.5%
on MNIST (see ``experiments/configs/cnn_mnist.py`` and ``docs/RESULTS.md``).
The convolution, normalization and activation are injected (``conv``, ``norm``,
``act``) as in Flax's ImageNet example.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.models._common import (
    Array,
    check_images,
    check_positive_int,
    check_positive_ints,
    check_rate,
)

__all__ = ["CNNMnist"]


class CNNMnist(nn.Module):
    """A VGG-style CNN for 28x28 or 32x32 digits.

    Attributes:
      num_classes: output classes.
      widths: channels of the two blocks.
      hidden: units of the hidden dense layer.
      dropout: dropout rate before the output.
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization (a ``BatchNorm``-like partial; its ``axis_name`` is set
        for ``pmap``).
      act: the activation.
      dtype: computation dtype.
    """

    num_classes: int = 10
    widths: tuple[int, int] = (32, 64)
    hidden: int = 256
    dropout: float = 0.3
    conv: Callable[..., nn.Module] = Conv
    norm: Callable[..., nn.Module] = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_positive_ints(self.widths, "widths")
        check_positive_int(self.hidden, "hidden")
        check_rate(self.dropout, "dropout")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images.
          train: batch statistics and dropout in training mode.

        Returns:
          ``(logits, features)`` with the output of each block.

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)`` of at least
            ``2 ** len(widths)`` pixels a side.
        """
        check_images(x, "CNNMnist", 2 ** len(self.widths))
        conv = functools.partial(
            self.conv,
            kernel_size=3,
            padding="SAME",
            use_bias=False,
            kernel_init="he_normal",
            dtype=self.dtype,
        )
        norm = functools.partial(self.norm, dtype=self.dtype)
        features: dict[str, Array] = {}
        h = x
        for b, width in enumerate(self.widths):
            for j in range(2):
                h = conv(width, name=f"conv{b}_{j}")(h)
                h = self.act(norm(name=f"bn{b}_{j}")(h, train=train))
            h = ops.max_pool(h, 2)
            features[f"block{b}"] = h
        h = h.reshape(h.shape[0], -1)
        h = self.act(nn.Dense(self.hidden, dtype=self.dtype, name="hidden")(h))
        features["hidden"] = h
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(h)
        features["logits"] = logits
        return logits, features
