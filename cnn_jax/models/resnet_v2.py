"""ResNet v2 (He et al. 2016) exactly as ``keras.applications.ResNet50V2``.

"Identity Mappings in Deep Residual Networks" (He, Zhang, Ren & Sun, ECCV 2016,
arXiv:1603.05027): the pre-activation bottleneck network. A 7x7/2 convolution with
bias, zero padding then a 3x3/2 max pool, four stages of pre-activation bottlenecks
(batch norm and ReLU before each convolution; the first block of a stage projects the
pre-activated input with a 1x1 convolution, the last block of stages 1-3 strides by 2
in its 3x3 convolution with a subsampled identity shortcut, as Keras does, where the
paper's code strides in the first block of stages 2-4), a final batch norm and ReLU
(``post_bn``), global average pooling and the ``predictions`` layer (logits; Keras
applies a softmax).

Batch norm epsilon 1.001e-5 and momentum 0.99 with the biased running variance
(Keras' conventions); Glorot-uniform kernels and zero biases (Keras' defaults). Layer
names equal Keras' (``conv1_conv``, ``conv2_block1_preact_bn``, ``conv2_block1_0_conv``,
..., ``post_bn``, ``predictions``), so ``cnn_jax.weights.from_keras`` works with its
default key.

Parameters of ``ResNet50V2`` / ``ResNet101V2`` / ``ResNet152V2``: 25,568,360 /
44,577,896 / 60,236,904, plus 45,440 / 97,664 / 143,744 batch-norm statistics, totals
25,613,800 / 44,675,560 / 60,380,648 as Keras' ``count_params``.

Every model returns ``(logits, features)``; ``features`` holds the stem output, every
stage's output, ``post`` and ``pre_logits``, the pooled vector before the classifier.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import Conv
from cnn_jax.layers.initializers import get_initializer
from cnn_jax.models._common import (
    Array,
    KerasResNetBatchNorm,
    ModuleDef,
    check_images,
    check_positive_int,
    check_positive_ints,
)
from cnn_jax.weights.convert import WeightSpec

__all__ = [
    "KERAS_SPECS",
    "KerasBatchNorm",
    "PreActBottleneck",
    "ResNet50V2",
    "ResNet101V2",
    "ResNet152V2",
    "ResNetV2",
]

#: Keras' batch normalization as ``keras.applications`` ResNets use it (epsilon
#: 1.001e-5; ``cnn_jax.models._common.KerasResNetBatchNorm``).
KerasBatchNorm = KerasResNetBatchNorm


class PreActBottleneck(nn.Module):
    """Keras' ``residual_block_v2``: a pre-activation bottleneck (He et al. 2016).

    ``preact = relu(bn(x))``; the residual is ``conv3(relu(bn(conv2(relu(bn(conv1(
    preact)))))))`` (``conv1``/``conv2`` without bias, ``conv3`` with); the shortcut is
    a 1x1 convolution (with bias) of ``preact`` if ``conv_shortcut``, else ``x``,
    subsampled by ``strides``. Sub-layers are named ``<block name>_preact_bn``,
    ``_0_conv``, ``_1_conv``, ``_1_bn``, ``_2_conv``, ``_2_bn``, ``_3_conv``, as Keras
    names them, so the block must be given a ``name`` such as ``conv2_block1``.

    Attributes:
      filters: bottleneck channels (output ``4 * filters``).
      strides: stride of the 3x3 convolution and of the shortcut.
      conv_shortcut: project the shortcut with a 1x1 convolution.
      conv: the convolution (init already bound by the model).
      norm: the normalization.
      act: the activation.
    """

    filters: int
    strides: int = 1
    conv_shortcut: bool = False
    conv: ModuleDef = Conv
    norm: ModuleDef = KerasBatchNorm
    act: Callable[[Array], Array] = nn.relu

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the block.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, ceil(H / strides), ceil(W / strides), 4 * filters)``.

        Raises:
          ValueError: if the block has no name.
        """
        if not self.name:
            raise ValueError(
                "PreActBottleneck needs a `name` (the Keras prefix, e.g. 'conv2_block1')"
            )
        p, s, out = self.name, self.strides, self.filters * self.expansion
        preact = self.act(self.norm(name=f"{p}_preact_bn")(x, train=train))
        if self.conv_shortcut:
            shortcut = self.conv(out, 1, strides=s, padding=0, name=f"{p}_0_conv")(preact)
        else:
            shortcut = x[:, ::s, ::s, :] if s > 1 else x  # Keras: MaxPooling2D(1, s)
        y = self.conv(self.filters, 1, padding=0, use_bias=False, name=f"{p}_1_conv")(preact)
        y = self.act(self.norm(name=f"{p}_1_bn")(y, train=train))
        y = self.conv(self.filters, 3, strides=s, padding=1, use_bias=False, name=f"{p}_2_conv")(y)
        y = self.act(self.norm(name=f"{p}_2_bn")(y, train=train))
        y = self.conv(out, 1, padding=0, name=f"{p}_3_conv")(y)
        return shortcut + y


class ResNetV2(nn.Module):
    """Pre-activation ResNet v2 as ``keras.applications.ResNet50V2`` (module docstring).

    Stage ``k`` (``conv2`` .. ``conv5``) has ``stage_sizes[k]`` blocks named
    ``conv{k+2}_block{j}``: the first projects its shortcut, the last strides by 2
    (except in the last stage).

    Attributes:
      stage_sizes: blocks per stage, ``(3, 4, 6, 3)`` for ResNet-50 v2.
      num_classes: output classes.
      width: bottleneck channels of the first stage (doubled every stage) and stem
        channels.
      conv: the convolution (a ``Conv``-like partial; biases are Keras').
      norm: the normalization (default Keras' batch norm: epsilon 1.001e-5,
        momentum 0.99, biased running variance).
      act: the activation.
      dtype: computation dtype.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    num_classes: int = 1000
    width: int = 64
    conv: ModuleDef = Conv
    norm: ModuleDef = KerasBatchNorm
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
          x: ``(N, H, W, C)`` images (224x224 on ImageNet; at least 32x32).
          train: batch statistics in training mode.

        Returns:
          ``(logits, features)``: features ``stem`` (after the max pool), ``conv2``
          .. ``conv5`` (stage outputs), ``post`` (after ``post_bn`` and ReLU) and
          ``pre_logits``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)``.
        """
        check_images(x, "ResNetV2")
        stages, width = tuple(self.stage_sizes), self.width
        conv = functools.partial(self.conv, kernel_init="glorot_uniform", dtype=self.dtype)
        norm = functools.partial(self.norm, dtype=self.dtype)
        features: dict[str, Array] = {}
        h = conv(width, 7, strides=2, padding=3, name="conv1_conv")(x)
        h = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))  # Keras' pool1_pad: zeros
        h = ops.max_pool(h, 3, 2)
        features["stem"] = h
        for i, n in enumerate(stages):
            last_stride = 2 if i < len(stages) - 1 else 1
            for j in range(1, n + 1):
                h = PreActBottleneck(
                    width * 2**i,
                    strides=last_stride if j == n else 1,
                    conv_shortcut=j == 1,
                    conv=conv,
                    norm=norm,
                    act=self.act,
                    name=f"conv{i + 2}_block{j}",
                )(h, train=train)
            features[f"conv{i + 2}"] = h
        h = self.act(norm(name="post_bn")(h, train=train))
        features["post"] = h
        h = ops.global_avg_pool(h)
        features["pre_logits"] = h
        logits = nn.Dense(
            self.num_classes,
            kernel_init=get_initializer("glorot_uniform"),
            dtype=self.dtype,
            name="predictions",
        )(h)
        return logits, features


ResNet50V2 = functools.partial(ResNetV2, stage_sizes=(3, 4, 6, 3))
ResNet101V2 = functools.partial(ResNetV2, stage_sizes=(3, 4, 23, 3))
ResNet152V2 = functools.partial(ResNetV2, stage_sizes=(3, 8, 36, 3))

#: ``keras.applications``' ResNet v2s; our module names are Keras' layer names.
KERAS_SPECS: dict[str, WeightSpec] = {
    "ResNet50V2": WeightSpec(model=ResNet50V2),
    "ResNet101V2": WeightSpec(model=ResNet101V2),
    "ResNet152V2": WeightSpec(model=ResNet152V2),
}
