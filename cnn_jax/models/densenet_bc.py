"""DenseNet-BC for CIFAR-10 (Huang, Liu, van der Maaten & Weinberger, CVPR 2017).

"Densely Connected Convolutional Networks" (arXiv:1608.06993), section 3 and Table 2:
a 3x3 convolution to ``2k`` channels; three dense blocks of ``n = (L - 4) / 6``
bottleneck layers each (BN, ReLU, 1x1 convolution to ``4k`` channels, BN, ReLU, 3x3
convolution to ``k`` channels, concatenated to the layer's input; the "B"), with a
transition between blocks (BN, ReLU, 1x1 convolution to ``floor(theta * m)`` of the
``m`` channels, the compression "C", then 2x2 average pooling); a final BN and ReLU,
global average pooling and a linear classifier. ``L`` counts the convolutions and
the classifier: ``3 * 2n`` in the blocks, one stem, two transitions, one classifier.

``DenseNetBC100`` (L=100, k=12) has 769,162 parameters and ``DenseNetBC250`` (L=250,
k=24) 15,324,406 (10 classes): the paper's 0.8M and 15.3M. The layers and
transitions are those of ``cnn_jax.models.densenet`` (module names ``denselayer1``
> ``norm1``, ``conv1``, ``norm2``, ``conv2``; ``transition1`` > ``norm``, ``conv``),
initialized as torchvision's DenseNet (Kaiming-normal ``fan_in`` convolutions without
bias, batch norm 1/0, PyTorch's default ``Linear`` weight and a zero bias).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.layers.initializers import get_initializer
from cnn_jax.models._common import (
    TORCH_CONV_INIT_FAN_IN,
    Array,
    ModuleDef,
    check_images,
    check_positive_int,
    check_rate,
)
from cnn_jax.models.densenet import DenseBlock, Transition

__all__ = ["DenseNetBC100", "DenseNetBC250", "DenseNetBCCifar", "dense_block_size"]


def dense_block_size(depth: Any) -> int:
    """Layers per dense block ``n = (depth - 4) / 6`` of a CIFAR DenseNet-BC.

    Raises:
      ValueError: naming ``depth`` unless ``depth - 4`` is a positive multiple of 6.
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"`depth` (={depth!r}) must be an int with depth - 4 a positive multiple of 6 "
            "(three dense blocks of bottleneck layers: 100, 250, ...)"
        )
    return (depth - 4) // 6


def _check_compression(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"`compression` (={value!r}) must be in (0, 1]")
    return float(value)


class DenseNetBCCifar(nn.Module):
    """DenseNet-BC for CIFAR-10 (module docstring).

    Attributes:
      depth: ``L``, with ``L - 4`` a multiple of 6.
      growth_rate: ``k``, channels each dense layer adds (positive).
      compression: ``theta`` in ``(0, 1]``, the fraction of channels a transition keeps.
      bn_size: bottleneck width in multiples of ``growth_rate`` (4 in the paper).
      drop_rate: dropout after every dense layer (training only; 'dropout' rng).
      num_classes: output classes.
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization (a ``BatchNorm``-like partial, called with ``train``).
      act: the activation.
      dtype: computation dtype.
    """

    depth: int = 100
    growth_rate: int = 12
    compression: float = 0.5
    bn_size: int = 4
    drop_rate: float = 0.0
    num_classes: int = 10
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        dense_block_size(self.depth)
        check_positive_int(self.growth_rate, "growth_rate")
        _check_compression(self.compression)
        check_positive_int(self.bn_size, "bn_size")
        check_rate(self.drop_rate, "drop_rate")
        check_positive_int(self.num_classes, "num_classes")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 32, 32, C)`` images (any size of at least 4x4 works).
          train: batch statistics and dropout in training mode.

        Returns:
          ``(logits, features)``: features ``stem``, ``denseblock1`` .. ``denseblock3``,
          ``transition1``, ``transition2``, ``post`` (after the final norm and ReLU) and
          ``pre_logits``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)`` of at least 4x4.
        """
        check_images(x, "DenseNetBCCifar", min_size=4)
        n, k = dense_block_size(self.depth), self.growth_rate
        conv = functools.partial(
            self.conv, use_bias=False, kernel_init=TORCH_CONV_INIT_FAN_IN, dtype=self.dtype
        )
        norm = functools.partial(self.norm, dtype=self.dtype)
        features: dict[str, Array] = {}
        h = conv(2 * k, 3, padding=1, name="conv0")(x)
        features["stem"] = h
        for i in range(3):
            h = DenseBlock(
                n, k, self.bn_size, self.drop_rate, conv, norm, self.act, name=f"denseblock{i + 1}"
            )(h, train=train)
            features[f"denseblock{i + 1}"] = h
            if i < 2:
                out = int(self.compression * h.shape[-1])
                h = Transition(out, conv, norm, self.act, name=f"transition{i + 1}")(h, train)
                features[f"transition{i + 1}"] = h
        h = self.act(norm(name="norm_final")(h, train=train))
        features["post"] = h
        h = ops.global_avg_pool(h)
        features["pre_logits"] = h
        logits = nn.Dense(
            self.num_classes,
            kernel_init=get_initializer("torch_default"),
            bias_init=nn.initializers.zeros,
            dtype=self.dtype,
            name="classifier",
        )(h)
        return logits, features


DenseNetBC100 = functools.partial(DenseNetBCCifar, depth=100, growth_rate=12)
DenseNetBC250 = functools.partial(DenseNetBCCifar, depth=250, growth_rate=24)
