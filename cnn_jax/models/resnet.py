"""Residual networks: ResNet v1 (He et al. 2015) for ImageNet and for CIFAR-10.

* ``ResNet`` / ``ResNet18`` ... ``ResNet152``: "Deep Residual Learning for Image
  Recognition" (He, Zhang, Ren & Sun, CVPR 2016, arXiv:1512.03385), exactly as
  torchvision builds it: a 7x7/2 convolution, batch norm, ReLU and a 3x3/2 max pool,
  four stages of ``BasicBlock`` (18, 34) or ``Bottleneck`` (50, 101, 152) blocks
  with 64, 128, 256, 512 base channels, the first block of stages 2-4 striding by 2
  and projecting its shortcut with a 1x1 convolution and batch norm (the paper's
  option B), then global average pooling and a linear classifier. As torchvision,
  the ``Bottleneck`` strides in its 3x3 convolution, not in its first 1x1 as in the
  paper: the variant known as "ResNet v1.5" (slightly more accurate on ImageNet,
  about 0.5% top-1 by NVIDIA's measurements; torchvision's weights are of it).
  Parameters: 11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808 for 1000
  classes.
  Initialization is torchvision's: Kaiming-normal convolutions (``fan_out``), batch
  norm scale 1 and bias 0, PyTorch's default ``Linear`` init for ``fc``; with
  ``zero_init_residual`` the last batch norm of every block starts with scale 0
  (Goyal et al. 2017), so every block starts as the identity.
  Module names mirror torchvision's (``conv1``, ``bn1``, ``layer1_0`` with
  ``conv1``/``bn1``/``conv2``/``bn2``/``conv3``/``bn3``/``downsample_0``/``downsample_1``,
  ``fc``), so ``cnn_jax.weights.from_torch`` maps torchvision's ``state_dict``
  (``layer1.0.downsample.0.weight``) with its default key function.
* ``ResNetCifar`` / ``ResNet20`` ... ``ResNet110``: the CIFAR-10 networks of section
  4.2 of the same paper: a 3x3 convolution to 16 channels, three stages of ``n``
  basic blocks with 16, 32, 64 channels (depth ``6n + 2``), global average pooling
  and a 10-way linear layer. Where the channels double the shortcut is the paper's
  option A, used for its CIFAR experiments: the identity, subsampled by 2 and
  zero-padded with the new channels (half before, half after, as the widely used
  PyTorch reimplementation), so shortcuts add no parameters: ResNet-20 has
  269,722 parameters (the paper's 0.27M), ResNet-32 464,154, ResNet-44 658,586,
  ResNet-56 853,018, ResNet-110 1,727,962 (10 classes). ``shortcut='B'`` gives 1x1 projections.
* ``ResNetV2`` / ``ResNet50V2`` ... ``ResNet152V2`` (Keras' pre-activation ResNets)
  live in ``cnn_jax.models.resnet_v2`` and are importable from here too.

Every model returns ``(logits, features)``; ``features`` holds the stem output, every
stage's output and ``pre_logits``, the pooled vector before the classifier.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.models._common import (
    TORCH_CONV_INIT_FAN_OUT,
    Array,
    ModuleDef,
    check_choice,
    check_images,
    check_positive_int,
    check_positive_ints,
    torch_linear,
)
from cnn_jax.models.resnet_v2 import (
    KERAS_SPECS,
    KerasBatchNorm,
    PreActBottleneck,
    ResNet50V2,
    ResNet101V2,
    ResNet152V2,
    ResNetV2,
)
from cnn_jax.weights.convert import WeightSpec

__all__ = [
    "KERAS_SPECS",
    "TORCHVISION_SPECS",
    "BasicBlock",
    "Bottleneck",
    "KerasBatchNorm",
    "PreActBottleneck",
    "ResNet",
    "ResNet18",
    "ResNet20",
    "ResNet32",
    "ResNet34",
    "ResNet44",
    "ResNet50",
    "ResNet50V2",
    "ResNet56",
    "ResNet101",
    "ResNet101V2",
    "ResNet110",
    "ResNet152",
    "ResNet152V2",
    "ResNetCifar",
    "ResNetV2",
]

#: The convolution init of torchvision's ResNet (``kaiming_normal_``, ``fan_out``);
#: ``cnn_jax.models._common.TORCH_CONV_INIT_FAN_OUT`` under its old name here.
TORCH_CONV_INIT = TORCH_CONV_INIT_FAN_OUT


def _shortcut(
    x: Array, features: int, strides: int, kind: str, conv: ModuleDef, norm: ModuleDef, train: bool
) -> Array:
    """The identity, or option A (subsample + zero channels) / B (1x1 conv + norm)."""
    if strides == 1 and x.shape[-1] == features:
        return x
    if kind == "A":
        extra = features - x.shape[-1]
        if extra < 0:
            raise ValueError(f"`shortcut='A'` cannot reduce channels ({x.shape[-1]} -> {features})")
        y = x[:, ::strides, ::strides, :]
        return jnp.pad(y, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    y = conv(features, 1, strides=strides, padding=0, name="downsample_0")(x)
    return norm(name="downsample_1")(y, train=train)


def _check_shortcut(kind: Any) -> str:
    return check_choice(kind, "shortcut", ("A", "B"))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (torchvision's ``BasicBlock``).

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; ``conv1`` carries the
    stride. The shortcut is the identity unless the stride or the channels change,
    when it is a 1x1 convolution and batch norm (``downsample_0``, ``downsample_1``;
    option B) or the zero-padded subsampled identity (option A).

    Attributes:
      filters: output channels.
      strides: stride of the block.
      conv: the convolution (bias and init already bound by the model).
      norm: the normalization.
      act: the activation.
      zero_init_residual: start the last norm's scale at zero.
      shortcut: ``'B'`` (projection) or ``'A'`` (zero-padded identity).
    """

    filters: int
    strides: int = 1
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    zero_init_residual: bool = False
    shortcut: str = "B"

    expansion: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _check_shortcut(self.shortcut)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the block.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, H / strides, W / strides, filters)``.
        """
        last_norm = (
            functools.partial(self.norm, scale_init=nn.initializers.zeros)
            if self.zero_init_residual
            else self.norm
        )
        y = self.conv(self.filters, 3, strides=self.strides, padding=1, name="conv1")(x)
        y = self.act(self.norm(name="bn1")(y, train=train))
        y = self.conv(self.filters, 3, padding=1, name="conv2")(y)
        y = last_norm(name="bn2")(y, train=train)
        identity = _shortcut(
            x, self.filters, self.strides, self.shortcut, self.conv, self.norm, train
        )
        return self.act(y + identity)


class Bottleneck(nn.Module):
    """1x1, 3x3, 1x1 convolutions with a shortcut (torchvision's ``Bottleneck``).

    The output has ``4 * filters`` channels. The stride is on the 3x3 convolution
    (``conv2``), as torchvision ("ResNet v1.5"); the paper strides in ``conv1``.

    Attributes:
      filters: channels of the 1x1 and 3x3 convolutions (output ``4 * filters``).
      strides: stride of the block.
      conv: the convolution (bias and init already bound by the model).
      norm: the normalization.
      act: the activation.
      zero_init_residual: start the last norm's (``bn3``) scale at zero.
      shortcut: ``'B'`` (projection) or ``'A'`` (zero-padded identity).
    """

    filters: int
    strides: int = 1
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    zero_init_residual: bool = False
    shortcut: str = "B"

    expansion: ClassVar[int] = 4

    def __post_init__(self) -> None:
        _check_shortcut(self.shortcut)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the block.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, H / strides, W / strides, 4 * filters)``.
        """
        out = self.filters * self.expansion
        last_norm = (
            functools.partial(self.norm, scale_init=nn.initializers.zeros)
            if self.zero_init_residual
            else self.norm
        )
        y = self.conv(self.filters, 1, padding=0, name="conv1")(x)
        y = self.act(self.norm(name="bn1")(y, train=train))
        y = self.conv(self.filters, 3, strides=self.strides, padding=1, name="conv2")(y)
        y = self.act(self.norm(name="bn2")(y, train=train))
        y = self.conv(out, 1, padding=0, name="conv3")(y)
        y = last_norm(name="bn3")(y, train=train)
        shortcut = _shortcut(x, out, self.strides, self.shortcut, self.conv, self.norm, train)
        return self.act(y + shortcut)


class ResNet(nn.Module):
    """ResNet v1 for ImageNet as torchvision builds it (see the module docstring).

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
      block: ``BasicBlock`` or ``Bottleneck`` (a class with an ``expansion``).
      num_classes: output classes.
      width: channels of the stem and of the first stage (doubled every stage).
      zero_init_residual: start every block's last norm scale at zero.
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization (a ``BatchNorm``-like partial, called with ``train``).
      act: the activation.
      dtype: computation dtype.
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: ModuleDef = BasicBlock
    num_classes: int = 1000
    width: int = 64
    zero_init_residual: bool = False
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_ints(self.stage_sizes, "stage_sizes")
        check_positive_int(self.num_classes, "num_classes")
        check_positive_int(self.width, "width")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images (224x224 on ImageNet).
          train: batch statistics in training mode.

        Returns:
          ``(logits, features)``: features ``stem`` (after the max pool),
          ``layer1`` .. ``layer4`` and ``pre_logits``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)``.
        """
        check_images(x, "ResNet")
        stages, width = tuple(self.stage_sizes), self.width
        conv = functools.partial(
            self.conv, use_bias=False, kernel_init=TORCH_CONV_INIT_FAN_OUT, dtype=self.dtype
        )
        norm = functools.partial(self.norm, dtype=self.dtype)
        features: dict[str, Array] = {}
        h = conv(width, 7, strides=2, padding=3, name="conv1")(x)
        h = self.act(norm(name="bn1")(h, train=train))
        h = ops.max_pool(h, 3, 2, padding=1)
        features["stem"] = h
        for i, n in enumerate(stages):
            for j in range(n):
                h = self.block(
                    width * 2**i,
                    strides=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    act=self.act,
                    zero_init_residual=self.zero_init_residual,
                    name=f"layer{i + 1}_{j}",
                )(h, train=train)
            features[f"layer{i + 1}"] = h
        h = ops.global_avg_pool(h)
        features["pre_logits"] = h
        logits = torch_linear(self.num_classes, h.shape[-1], self.dtype, name="fc")(h)
        return logits, features


class ResNetCifar(nn.Module):
    """ResNet for CIFAR-10 (He et al. 2015, section 4.2): depth ``6n + 2``, 3 stages.

    Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1_0``, ...,
    ``fc``).

    Attributes:
      stage_sizes: blocks per stage, ``(n, n, n)``; ``n = 3`` is ResNet-20.
      widths: channels of the stages (16, 32, 64 in the paper).
      shortcut: ``'A'`` (paper: zero-padded identity, no parameters) or ``'B'``
        (1x1 convolution and norm where the shape changes).
      num_classes: output classes.
      zero_init_residual: start every block's last norm scale at zero.
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization (a ``BatchNorm``-like partial, called with ``train``).
      act: the activation.
      dtype: computation dtype.
    """

    stage_sizes: Sequence[int] = (3, 3, 3)
    widths: Sequence[int] = (16, 32, 64)
    shortcut: str = "A"
    num_classes: int = 10
    zero_init_residual: bool = False
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_ints(self.stage_sizes, "stage_sizes")
        check_positive_int(self.num_classes, "num_classes")
        widths = check_positive_ints(self.widths, "widths")
        if len(widths) != len(tuple(self.stage_sizes)):
            raise ValueError(
                f"`widths` (={self.widths!r}) needs one entry per stage of "
                f"`stage_sizes` (={self.stage_sizes!r})"
            )
        _check_shortcut(self.shortcut)
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
        check_images(x, "ResNetCifar")
        stages, widths = tuple(self.stage_sizes), tuple(self.widths)
        conv = functools.partial(
            self.conv, use_bias=False, kernel_init=TORCH_CONV_INIT_FAN_OUT, dtype=self.dtype
        )
        norm = functools.partial(self.norm, dtype=self.dtype)
        features: dict[str, Array] = {}
        h = conv(widths[0], 3, padding=1, name="conv1")(x)
        h = self.act(norm(name="bn1")(h, train=train))
        features["stem"] = h
        for i, (n, w) in enumerate(zip(stages, widths)):
            for j in range(n):
                h = BasicBlock(
                    w,
                    strides=2 if i > 0 and j == 0 else 1,
                    conv=conv,
                    norm=norm,
                    act=self.act,
                    zero_init_residual=self.zero_init_residual,
                    shortcut=self.shortcut,
                    name=f"layer{i + 1}_{j}",
                )(h, train=train)
            features[f"layer{i + 1}"] = h
        h = ops.global_avg_pool(h)
        features["pre_logits"] = h
        logits = torch_linear(self.num_classes, h.shape[-1], self.dtype, name="fc")(h)
        return logits, features


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block=Bottleneck)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block=Bottleneck)

ResNet20 = functools.partial(ResNetCifar, stage_sizes=(3, 3, 3))
ResNet32 = functools.partial(ResNetCifar, stage_sizes=(5, 5, 5))
ResNet44 = functools.partial(ResNetCifar, stage_sizes=(7, 7, 7))
ResNet56 = functools.partial(ResNetCifar, stage_sizes=(9, 9, 9))
ResNet110 = functools.partial(ResNetCifar, stage_sizes=(18, 18, 18))

#: torchvision's ResNets; our module names follow theirs (``default_torch_key``).
TORCHVISION_SPECS: dict[str, WeightSpec] = {
    "resnet18": WeightSpec(model=ResNet18, export=True),
    "resnet34": WeightSpec(model=ResNet34, export=True),
    "resnet50": WeightSpec(model=ResNet50, export=True),
    "resnet101": WeightSpec(model=ResNet101, export=True),
    "resnet152": WeightSpec(model=ResNet152, export=True),
}
