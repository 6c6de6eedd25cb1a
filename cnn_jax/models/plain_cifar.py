"""The CIFAR-10 networks of He et al. 2015 without shortcuts, and ResNet-1202.

"Deep Residual Learning for Image Recognition" (He, Zhang, Ren & Sun, CVPR 2016,
arXiv:1512.03385), section 4.2:

* ``PlainCifar`` / ``Plain20`` ... ``Plain110``: the "plain" baselines of Figure 6
  (left): the layout of ``ResNetCifar`` (a 3x3 convolution to 16 channels, three stages
  of ``n`` blocks of two 3x3 convolutions with 16, 32, 64 channels, the first block of
  stages 2 and 3 striding by 2, global average pooling, a linear classifier; depth
  ``6n + 2``) with every shortcut removed: a block is
  ``relu(bn2(conv2(relu(bn1(conv1(x))))))``. The paper's residual nets use the
  parameter-free option A shortcut, so a plain net has exactly the parameters of the
  ResNet of the same depth: 269,722 / 464,154 / 658,586 / 853,018 / 1,727,962 for
  depths 20 / 32 / 44 / 56 / 110 (10 classes; the paper's 0.27M ... 1.7M).
* ``ResNet1202``: ``ResNetCifar`` with ``n = 200`` (19,421,274 parameters, the paper's
  19.4M), the over-deep network of section 4.2 ("Exploring over 1000 layers").

Initialization and module names are ``ResNetCifar``'s (torchvision's conventions:
Kaiming-normal ``fan_out`` convolutions without bias, batch norm 1/0, PyTorch's default
``Linear``). ``__call__(x, train)`` returns ``(logits, features)`` with ``stem``,
``layer1`` .. ``layer3`` and ``pre_logits``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.models._common import (
    TORCH_CONV_INIT_FAN_OUT,
    Array,
    ModuleDef,
    check_images,
    check_positive_int,
    check_positive_ints,
    torch_linear,
)
from cnn_jax.models.resnet import ResNetCifar

__all__ = [
    "Plain20",
    "Plain32",
    "Plain44",
    "Plain56",
    "Plain110",
    "PlainBlock",
    "PlainCifar",
    "ResNet1202",
    "cifar_stage_size",
]


def cifar_stage_size(depth: Any, per_block: int = 2) -> int:
    """Blocks per stage ``n`` of a three-stage CIFAR network of ``depth = 3 * per_block * n + 2``.

    Args:
      depth: weighted layers along the path (``6n + 2`` for two-layer blocks, ``9n + 2``
        for bottlenecks).
      per_block: weighted layers per block.

    Returns:
      ``n >= 1``.

    Raises:
      ValueError: naming ``depth`` if it is not of that form.
    """
    step = 3 * per_block
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < step + 2:
        raise ValueError(f"`depth` (={depth!r}) must be an int {step}n + 2 with n >= 1")
    if (depth - 2) % step:
        raise ValueError(f"`depth` (={depth!r}) must be {step}n + 2 (20, 32, 44, ...)")
    return (depth - 2) // step


class PlainBlock(nn.Module):
    """Two 3x3 convolutions and no shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))))``.

    Attributes:
      filters: output channels.
      strides: stride of ``conv1``.
      conv: the convolution (bias and init already bound by the model).
      norm: the normalization.
      act: the activation.
    """

    filters: int
    strides: int = 1
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the block.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, H / strides, W / strides, filters)``.
        """
        y = self.conv(self.filters, 3, strides=self.strides, padding=1, name="conv1")(x)
        y = self.act(self.norm(name="bn1")(y, train=train))
        y = self.conv(self.filters, 3, padding=1, name="conv2")(y)
        return self.act(self.norm(name="bn2")(y, train=train))


class PlainCifar(nn.Module):
    """The plain CIFAR-10 network of He et al. 2015 (module docstring): no shortcuts.

    Attributes:
      stage_sizes: blocks per stage, ``(n, n, n)`` for depth ``6n + 2``.
      widths: channels of the stages (16, 32, 64 in the paper).
      num_classes: output classes.
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization (a ``BatchNorm``-like partial, called with ``train``).
      act: the activation.
      dtype: computation dtype.
    """

    stage_sizes: Sequence[int] = (3, 3, 3)
    widths: Sequence[int] = (16, 32, 64)
    num_classes: int = 10
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        stages = check_positive_ints(self.stage_sizes, "stage_sizes")
        widths = check_positive_ints(self.widths, "widths")
        if len(widths) != len(stages):
            raise ValueError(
                f"`widths` (={self.widths!r}) needs one entry per stage of "
                f"`stage_sizes` (={self.stage_sizes!r})"
            )
        check_positive_int(self.num_classes, "num_classes")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 32, 32, C)`` images (any size works).
          train: batch statistics in training mode.

        Returns:
          ``(logits, features)``: features ``stem``, ``layer1`` .. ``layer3`` and
          ``pre_logits``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)``.
        """
        check_images(x, "PlainCifar")
        conv = functools.partial(
            self.conv, use_bias=False, kernel_init=TORCH_CONV_INIT_FAN_OUT, dtype=self.dtype
        )
        norm = functools.partial(self.norm, dtype=self.dtype)
        widths = tuple(self.widths)
        features: dict[str, Array] = {}
        h = conv(widths[0], 3, padding=1, name="conv1")(x)
        h = self.act(norm(name="bn1")(h, train=train))
        features["stem"] = h
        for i, (n, w) in enumerate(zip(tuple(self.stage_sizes), widths)):
            for j in range(n):
                h = PlainBlock(
                    w,
                    strides=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    act=self.act,
                    name=f"layer{i + 1}_{j}",
                )(h, train=train)
            features[f"layer{i + 1}"] = h
        h = ops.global_avg_pool(h)
        features["pre_logits"] = h
        logits = torch_linear(self.num_classes, h.shape[-1], self.dtype, name="fc")(h)
        return logits, features


Plain20 = functools.partial(PlainCifar, stage_sizes=(3, 3, 3))
Plain32 = functools.partial(PlainCifar, stage_sizes=(5, 5, 5))
Plain44 = functools.partial(PlainCifar, stage_sizes=(7, 7, 7))
Plain56 = functools.partial(PlainCifar, stage_sizes=(9, 9, 9))
Plain110 = functools.partial(PlainCifar, stage_sizes=(18, 18, 18))

ResNet1202 = functools.partial(ResNetCifar, stage_sizes=(200, 200, 200))
