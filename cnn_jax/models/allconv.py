"""All-convolutional net (All-CNN-C) and Network in Network, for CIFAR-10.

* ``AllConvNet``: All-CNN-C of "Striving for Simplicity: The All Convolutional Net"
  (Springenberg, Dosovitskiy, Brox & Riedmiller, ICLR 2015 workshop, arXiv:1412.6806),
  Tables 1 and 2: model C with every max pooling replaced by a 3x3 convolution of
  stride 2. On 32x32 inputs: 3x3 conv 96, 3x3 conv 96, 3x3 conv 96 stride 2; 3x3
  conv 192, 3x3 conv 192, 3x3 conv 192 stride 2; 3x3 conv 192 (no padding: 8x8 ->
  6x6), 1x1 conv 192, 1x1 conv 10; every convolution with bias and ReLU (the last
  one too, as in the paper's table), global average pooling over the 6x6 maps as the
  logits. Dropout on the input (20%) and after each strided convolution (50%), as
  section 3.1. Parameters: 1,369,738 for 10 classes (the layout fixes it; the paper
  rounds its counts to a tenth of a million). ``downsample='pool'`` gives the
  paper's base "Model C": 3x3 max pooling with stride 2 (padding 1) in place of the
  strided convolutions, 954,730 parameters.
* ``NetworkInNetwork``: "Network In Network" (Lin, Chen & Yan, ICLR 2014,
  arXiv:1312.4400), the CIFAR-10 model of section 4.2: three "mlpconv" layers, each a
  spatial convolution followed by two 1x1 convolutions (the shared "micro" MLP), all
  with ReLU: 5x5 192 / 160 / 96, 5x5 192 / 192 / 192, 3x3 192 / 192 / classes; 3x3
  max pooling with stride 2 (32 -> 16 -> 8, padding as Caffe's rounding up) and 50%
  dropout after the first two; global average pooling over the last maps as the
  logits. Parameters: 966,986 for 10 classes (the paper gives no count).

Initialization: Kaiming-normal (``fan_in``) kernels, zero biases. Both return
``(logits, features)`` with every block's output and ``pre_logits`` (the last maps).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from cnn_jax import ops
from cnn_jax.layers import Conv
from cnn_jax.models._common import (
    TORCH_CONV_INIT_FAN_IN,
    Array,
    check_choice,
    check_images,
    check_positive_int,
    check_rate,
)

__all__ = ["AllConvNet", "NetworkInNetwork"]


class AllConvNet(nn.Module):
    """All-CNN-C (module docstring); ``downsample='pool'`` gives Model C.

    Attributes:
      num_classes: output classes (channels of the last 1x1 convolution).
      downsample: ``'conv'`` (3x3 convolution, stride 2; All-CNN-C) or ``'pool'`` (3x3
        max pooling, stride 2; Model C).
      input_dropout: dropout rate on the input (training only; 'dropout' rng).
      dropout: dropout rate after each downsampling (training only).
      dtype: computation dtype.
    """

    num_classes: int = 10
    downsample: str = "conv"
    input_dropout: float = 0.2
    dropout: float = 0.5
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_choice(self.downsample, "downsample", ("conv", "pool"))
        check_rate(self.input_dropout, "input_dropout")
        check_rate(self.dropout, "dropout")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 32, 32, C)`` images (at least 9x9).
          train: dropout in training mode.

        Returns:
          ``(logits, features)``: features ``block1``, ``block2`` (after each
          downsampling), ``block3`` (the last maps, ``num_classes`` channels) and
          ``pre_logits`` (their average).

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)`` of at least 9x9.
        """
        check_images(x, "AllConvNet", min_size=9)

        def conv(h: Array, features: int, k: int, name: str, stride: int = 1, pad: int = 1):
            c = Conv(
                features,
                k,
                strides=stride,
                padding=pad,
                kernel_init=TORCH_CONV_INIT_FAN_IN,
                dtype=self.dtype,
                name=name,
            )
            return nn.relu(c(h))

        features: dict[str, Array] = {}
        h = nn.Dropout(self.input_dropout, deterministic=not train)(x)
        for b, width in enumerate((96, 192), start=1):
            h = conv(h, width, 3, f"conv{3 * b - 2}")
            h = conv(h, width, 3, f"conv{3 * b - 1}")
            if self.downsample == "conv":
                h = conv(h, width, 3, f"conv{3 * b}", stride=2)
            else:
                h = ops.max_pool(h, 3, 2, padding=1)
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
            features[f"block{b}"] = h
        h = conv(h, 192, 3, "conv7", pad=0)
        h = conv(h, 192, 1, "conv8", pad=0)
        h = conv(h, self.num_classes, 1, "conv9", pad=0)
        features["block3"] = h
        logits = ops.global_avg_pool(h)
        features["pre_logits"] = logits
        return logits, features


class NetworkInNetwork(nn.Module):
    """Network in Network for CIFAR-10 (module docstring).

    Attributes:
      num_classes: output classes (channels of the last 1x1 convolution).
      dropout: dropout rate after the first two mlpconv layers (training only).
      dtype: computation dtype.
    """

    num_classes: int = 10
    dropout: float = 0.5
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_rate(self.dropout, "dropout")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 32, 32, C)`` images (any size works).
          train: dropout in training mode.

        Returns:
          ``(logits, features)``: features ``mlpconv1`` .. ``mlpconv3`` and
          ``pre_logits`` (the logits: the average of the last maps).

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)``.
        """
        check_images(x, "NetworkInNetwork")
        layout = (
            (5, (192, 160, 96)),
            (5, (192, 192, 192)),
            (3, (192, 192, self.num_classes)),
        )
        features: dict[str, Array] = {}
        h, cccp = x, 0
        for b, (k, widths) in enumerate(layout, start=1):
            for i, width in enumerate(widths):
                size, pad = (k, k // 2) if i == 0 else (1, 0)
                name = f"conv{b}" if i == 0 else f"cccp{cccp + 1}"
                cccp += i > 0
                conv = Conv(
                    width,
                    size,
                    padding=pad,
                    kernel_init=TORCH_CONV_INIT_FAN_IN,
                    dtype=self.dtype,
                    name=name,
                )
                h = nn.relu(conv(h))
            if b < 3:
                h = ops.max_pool(h, 3, 2, padding=0, ceil_mode=True)
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            features[f"mlpconv{b}"] = h
        logits = ops.global_avg_pool(h)
        features["pre_logits"] = logits
        return logits, features
