"""DenseNet-BC (Huang, Liu, van der Maaten & Weinberger, CVPR 2017, arXiv:1608.06993).

Exactly as torchvision builds it: a 7x7/2 convolution (``conv0``), batch norm, ReLU and
a 3x3/2 max pool; four dense blocks whose layers each add ``growth_rate`` channels
(batch norm, ReLU, 1x1 convolution to ``bn_size * growth_rate`` channels, batch norm,
ReLU, 3x3 convolution; the "bottleneck" B of DenseNet-BC), concatenated to their
input; between blocks a transition (batch norm, ReLU, 1x1 convolution halving the
channels, the compression C with theta = 0.5, 2x2 average pooling); a final batch norm
(``norm5``), ReLU, global average pooling and a linear classifier.
DenseNet-121/169/201/161: 7,978,856 / 14,149,480 / 20,013,928 / 28,681,000 parameters
for 1000 classes. Initialization is torchvision's: Kaiming-normal convolutions
(``fan_in``), batch norm scale 1 and bias 0, PyTorch's default ``Linear`` weight and a
zero bias for the classifier.

Module names mirror torchvision's with ``_`` for ``.``: ``features_conv0``,
``features_norm0``, ``features_denseblock1`` > ``denselayer1`` > ``norm1``, ``conv1``,
``norm2``, ``conv2``; ``features_transition1`` > ``norm``, ``conv``; ``features_norm5``;
``classifier``. ``torch_key`` turns a module path into torchvision's prefix
(``features.denseblock1.denselayer1.norm1``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.layers.initializers import get_initializer
from cnn_jax.models._common import (
    TORCH_CONV_INIT_FAN_IN,
    Array,
    ModuleDef,
    check_images,
    check_positive_int,
    check_positive_ints,
    check_rate,
)
from cnn_jax.weights.convert import WeightSpec

__all__ = [
    "TORCHVISION_SPECS",
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "DenseNet121",
    "DenseNet161",
    "DenseNet169",
    "DenseNet201",
    "Transition",
    "rename_legacy_torch_keys",
    "torch_key",
]

#: The convolution init of torchvision's DenseNet (``kaiming_normal_``, ``fan_in``);
#: ``cnn_jax.models._common.TORCH_CONV_INIT_FAN_IN`` under its old name here.
TORCH_CONV_INIT = TORCH_CONV_INIT_FAN_IN


def torch_key(path: Sequence[str]) -> str:
    """The torchvision module prefix of a flax module path: every ``_`` becomes ``.``.

    Args:
      path: flax module names from the root, e.g. ``('features_denseblock1',
        'denselayer1', 'norm1')``.

    Returns:
      The torchvision prefix, e.g. ``'features.denseblock1.denselayer1.norm1'``.
    """
    return ".".join(path).replace("_", ".")


_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def rename_legacy_torch_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Renames the keys of torchvision's published DenseNet checkpoints.

    The files on download.pytorch.org predate the current module names and spell
    ``denselayer1.norm1.weight`` as ``denselayer1.norm.1.weight``; torchvision fixes
    them with this same pattern when it loads them. Current keys pass unchanged.

    Args:
      state_dict: a DenseNet state dict.

    Returns:
      The state dict with current keys.
    """
    return {_LEGACY.sub(r"\1\2", k): v for k, v in state_dict.items()}


class DenseLayer(nn.Module):
    """A DenseNet-BC layer: BN-ReLU-Conv1x1-BN-ReLU-Conv3x3, ``growth_rate`` new maps.

    Attributes:
      growth_rate: channels produced (the paper's ``k``).
      bn_size: bottleneck width in multiples of ``growth_rate`` (4 in the paper).
      drop_rate: dropout rate on the new maps (training only).
      conv: the convolution (bias and init already bound).
      norm: the normalization.
      act: the activation.
    """

    growth_rate: int
    bn_size: int = 4
    drop_rate: float = 0.0
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Computes the new feature maps.

        Args:
          x: ``(N, H, W, C)``, the concatenation of all earlier maps of the block.
          train: batch statistics and dropout in training mode.

        Returns:
          ``(N, H, W, growth_rate)``.
        """
        h = self.act(self.norm(name="norm1")(x, train=train))
        h = self.conv(self.bn_size * self.growth_rate, 1, padding=0, name="conv1")(h)
        h = self.act(self.norm(name="norm2")(h, train=train))
        h = self.conv(self.growth_rate, 3, padding=1, name="conv2")(h)
        if self.drop_rate > 0:
            h = nn.Dropout(self.drop_rate, deterministic=not train)(h)
        return h


class DenseBlock(nn.Module):
    """``num_layers`` dense layers (``denselayer1``, ...), each fed all earlier maps.

    Attributes:
      num_layers: layers in the block.
      growth_rate: channels each layer adds.
      bn_size: see ``DenseLayer``.
      drop_rate: see ``DenseLayer``.
      conv: the convolution.
      norm: the normalization.
      act: the activation.
    """

    num_layers: int
    growth_rate: int
    bn_size: int = 4
    drop_rate: float = 0.0
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the block.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics and dropout in training mode.

        Returns:
          ``(N, H, W, C + num_layers * growth_rate)``: the input then every layer's maps.
        """
        for i in range(self.num_layers):
            new = DenseLayer(
                self.growth_rate,
                self.bn_size,
                self.drop_rate,
                self.conv,
                self.norm,
                self.act,
                name=f"denselayer{i + 1}",
            )(x, train=train)
            x = jnp.concatenate([x, new], axis=-1)
        return x


class Transition(nn.Module):
    """BN-ReLU-Conv1x1 to ``features`` channels, then 2x2 average pooling.

    Attributes:
      features: output channels.
      conv: the convolution.
      norm: the normalization.
      act: the activation.
    """

    features: int
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the transition.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, H // 2, W // 2, features)``.
        """
        h = self.act(self.norm(name="norm")(x, train=train))
        h = self.conv(self.features, 1, padding=0, name="conv")(h)
        return ops.avg_pool(h, 2)


class DenseNet(nn.Module):
    """DenseNet-BC for ImageNet as torchvision builds it (see the module docstring).

    Attributes:
      growth_rate: channels each dense layer adds (``k``).
      block_config: layers per dense block.
      num_init_features: channels of the stem convolution.
      bn_size: bottleneck width in multiples of ``growth_rate``.
      drop_rate: dropout after every dense layer (training only; 'dropout' rng).
      num_classes: output classes.
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization (a ``BatchNorm``-like partial, called with ``train``).
      act: the activation.
      dtype: computation dtype.
    """

    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0
    num_classes: int = 1000
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_ints(self.block_config, "block_config")
        for name in ("growth_rate", "bn_size", "num_init_features", "num_classes"):
            check_positive_int(getattr(self, name), name)
        check_rate(self.drop_rate, "drop_rate")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images (224x224 on ImageNet).
          train: batch statistics and dropout in training mode.

        Returns:
          ``(logits, features)``: features ``stem`` (after the max pool),
          ``denseblock1`` .. ``denseblock4``, ``transition1`` .. ``transition3``,
          ``norm5`` (after the final norm and ReLU) and ``pre_logits``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)``.
        """
        check_images(x, "DenseNet")
        blocks, growth, bn_size = tuple(self.block_config), self.growth_rate, self.bn_size
        conv = functools.partial(
            self.conv, use_bias=False, kernel_init=TORCH_CONV_INIT_FAN_IN, dtype=self.dtype
        )
        norm = functools.partial(self.norm, dtype=self.dtype)
        features: dict[str, Array] = {}
        h = conv(self.num_init_features, 7, strides=2, padding=3, name="features_conv0")(x)
        h = self.act(norm(name="features_norm0")(h, train=train))
        h = ops.max_pool(h, 3, 2, padding=1)
        features["stem"] = h
        for i, n in enumerate(blocks):
            h = DenseBlock(
                n,
                growth,
                bn_size,
                self.drop_rate,
                conv,
                norm,
                self.act,
                name=f"features_denseblock{i + 1}",
            )(h, train=train)
            features[f"denseblock{i + 1}"] = h
            if i < len(blocks) - 1:
                h = Transition(
                    h.shape[-1] // 2, conv, norm, self.act, name=f"features_transition{i + 1}"
                )(h, train=train)
                features[f"transition{i + 1}"] = h
        h = self.act(norm(name="features_norm5")(h, train=train))
        features["norm5"] = h
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


DenseNet121 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 24, 16))
DenseNet169 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 32, 32))
DenseNet201 = functools.partial(DenseNet, growth_rate=32, block_config=(6, 12, 48, 32))
DenseNet161 = functools.partial(
    DenseNet, growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96
)

#: torchvision's DenseNets. Their published checkpoints use older key names, renamed by
#: ``rename_legacy_torch_keys`` on load (``WeightSpec.prepare``).
TORCHVISION_SPECS: dict[str, WeightSpec] = {
    "densenet121": WeightSpec(
        model=DenseNet121, key_fn=torch_key, export=True, prepare=rename_legacy_torch_keys
    ),
    "densenet161": WeightSpec(
        model=DenseNet161, key_fn=torch_key, export=True, prepare=rename_legacy_torch_keys
    ),
    "densenet169": WeightSpec(
        model=DenseNet169, key_fn=torch_key, export=True, prepare=rename_legacy_torch_keys
    ),
    "densenet201": WeightSpec(
        model=DenseNet201, key_fn=torch_key, export=True, prepare=rename_legacy_torch_keys
    ),
}
