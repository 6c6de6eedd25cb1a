"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) and ZFNet (Zeiler & Fergus 2014).

Three networks, each ``__call__(x, train) -> (logits, features)``:

* ``AlexNet``: torchvision's ``alexnet`` exactly (the "one weird trick" variant of
  Krizhevsky 2014: 64/192/384/256/256 channels, no normalization, adaptive average
  pooling to 6x6, dropout before the first two linear layers), with torchvision's
  module names (``features_0`` ... ``classifier_6``, i.e. ``features.0.weight`` ...) and
  PyTorch's default initialization. 61,100,840 parameters with 1000 classes.
* ``AlexNetPaper``: the network of the paper (Section 3.5, Figure 2): 96 11x11 stride-4
  kernels, then 256 5x5, 384 3x3, 384 3x3 and 256 3x3; ReLU after every layer; local
  response normalization (``k=2, n=5, alpha=1e-4, beta=0.75``, Section 3.3) after the
  ReLU of the first and second convolutions, each followed by overlapping 3x3 stride-2
  max pooling (Section 3.4), as is the fifth convolution; fully connected 4096-4096-
  ``num_classes`` with dropout 0.5 on the outputs of the two hidden layers (Section
  4.2). With ``two_tower=True`` (default) the second, fourth and fifth convolutions
  only see the kernel maps on their own GPU (``groups=2``) and the response
  normalization runs within each tower, as trained on two GPUs (Section 3.2); the third
  convolution and the dense layers are full. Initialization as Section 5: weights
  ``N(0, 0.01)``, biases 1 in the second, fourth and fifth convolutions and the hidden
  dense layers, 0 elsewhere.
  Parameters with 1000 classes: **60,965,224** with two towers (the paper's "60
  million parameters"; convolutions 2,334,080, dense layers 58,631,144) and 62,378,344
  with ``two_tower=False``.
* ``ZFNet``: Zeiler & Fergus (2014), Figure 3: 96 7x7 stride-2 kernels (224 -> 110),
  3x3 stride-2 max pooling (-> 55), contrast normalization across feature maps; 256
  5x5 stride-2 kernels (-> 26), 3x3 stride-2 pooling (-> 13), normalization; 384, 384
  and 256 3x3 kernels (dense connections, no towers: Section 3); 3x3 stride-2 pooling
  (-> 6x6x256 = 9216); fully connected 4096-4096-``num_classes`` with dropout 0.5
  (Section 3). The paper does not give the normalization's constants; it is AlexNet's
  local response normalization here. Its pooling sizes (110 -> 55, 26 -> 13) are those
  of ceil-mode pooling (Caffe's), and the first convolution is padded by 1 (224 -> 110).
  Initialization as Section 3: weights ``N(0, 0.01)``, biases 0 (the paper's
  renormalization of filters whose RMS exceeds 0.1 is a training step, not part of the
  model). **62,357,608** parameters with 1000 classes (convolutions 3,726,464, dense
  layers 58,631,144).

``AlexNetPaper`` and ``ZFNet`` also pool adaptively to 6x6 before the dense layers
(torchvision's choice, the identity at the papers' 224x224 input) so that they accept
any input of at least 63x63 pixels.

``features``: ``conv{i}`` (after the ReLU), ``norm{i}`` (after a normalization),
``pool{i}``, ``pooled`` (the flattened 6x6 grid), ``fc6``, ``fc7`` (after the ReLU,
before dropout), ``pre_logits`` (= ``fc7``, the input of the last layer) and ``logits``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import Conv, LocalResponseNorm, get_initializer
from cnn_jax.models._common import Array, check_images, check_positive_int, check_rate, torch_linear
from cnn_jax.weights import WeightSpec, permute_flatten

__all__ = ["TORCHVISION_SPECS", "AlexNet", "AlexNetPaper", "ZFNet"]

#: The smallest input side every network here accepts (the last pooling needs 3x3).
MIN_SIZE = 63


def _apply_norm(layer: nn.Module, x: Array, train: bool) -> Array:
    """Calls a normalization module, with ``train`` only if it takes it.

    ``BatchNorm`` does, the parameter-free ``LocalResponseNorm`` does not.

    Args:
      layer: the normalization module.
      x: its input.
      train: training mode.

    Returns:
      The normalized ``x``.
    """
    if "train" in inspect.signature(layer.__call__).parameters:
        return layer(x, train=train)
    return layer(x)


def _dense(
    features: int, fan_in: int, init: str, dtype: Any, name: str, bias: float = 0.0
) -> nn.Dense:
    """A dense layer with PyTorch's default (``init='torch'``) or the papers' ``N(0, 0.01)``."""
    if init == "torch":
        return torch_linear(features, fan_in, dtype, name=name)
    kernel_init = get_initializer("normal", stddev=0.01)
    bias_init = get_initializer("constant", value=bias)
    return nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, dtype=dtype, name=name)


class AlexNet(nn.Module):
    """torchvision's AlexNet (see the module docstring).

    Attributes:
      num_classes: output classes.
      dropout: dropout rate before the first two linear layers.
      conv: the convolution (a ``Conv``-like partial).
      norm: ``None`` (torchvision's AlexNet has none), or a normalization inserted
        after every convolution (modules ``norm1`` .. ``norm5``, outside torchvision's
        names).
      act: the activation.
      dtype: computation dtype.
    """

    num_classes: int = 1000
    dropout: float = 0.5
    conv: Callable[..., nn.Module] = Conv
    norm: Callable[..., nn.Module] | None = None
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_rate(self.dropout, "dropout")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images, ``H, W >= 63`` (224 for ImageNet).
          train: dropout (rng ``'dropout'``) and batch statistics of ``norm``.

        Returns:
          ``(logits, features)``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)`` or is too small.
        """
        check_images(x, "AlexNet", MIN_SIZE)
        conv = functools.partial(
            self.conv, kernel_init="torch_default", bias_init="torch_default", dtype=self.dtype
        )
        f: dict[str, Array] = {}
        # (torchvision index, channels, kernel, stride, padding, max pool after)
        layers = [(0, 64, 11, 4, 2, 1), (3, 192, 5, 1, 2, 2), (6, 384, 3, 1, 1, 0)]
        layers += [(8, 256, 3, 1, 1, 0), (10, 256, 3, 1, 1, 5)]
        h = x
        for i, (index, width, k, s, p, pool) in enumerate(layers, 1):
            h = conv(width, k, strides=s, padding=p, name=f"features_{index}")(h)
            if self.norm is not None:
                h = _apply_norm(self.norm(dtype=self.dtype, name=f"norm{i}"), h, train)
            f[f"conv{i}"] = h = self.act(h)
            if pool:
                f[f"pool{pool}"] = h = ops.max_pool(h, 3, 2)
        h = ops.adaptive_avg_pool(h, 6)
        f["pooled"] = h = h.reshape(h.shape[0], -1)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _dense(4096, h.shape[-1], "torch", self.dtype, "classifier_1")(h)
        f["fc6"] = h = self.act(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _dense(4096, h.shape[-1], "torch", self.dtype, "classifier_4")(h)
        f["fc7"] = f["pre_logits"] = h = self.act(h)
        logits = _dense(self.num_classes, h.shape[-1], "torch", self.dtype, "classifier_6")(h)
        f["logits"] = logits
        return logits, f


class _PaperNet(nn.Module):
    """The layers AlexNetPaper and ZFNet share: five convolutions, three dense layers.

    Subclasses define ``_layers()``: per convolution ``(channels, kernel, stride,
    padding, groups, bias, order)``, ``order`` a string of the steps after the ReLU
    (``'n'`` normalization, ``'p'`` floor-mode pooling, ``'P'`` ceil-mode pooling).
    """

    #: The initial bias of the two hidden dense layers.
    hidden_bias: ClassVar[float] = 0.0

    num_classes: int = 1000
    dropout: float = 0.5
    conv: Callable[..., nn.Module] = Conv
    norm: Callable[..., nn.Module] | None = LocalResponseNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_rate(self.dropout, "dropout")
        super().__post_init__()

    def _layers(self) -> list[tuple[int, int, int, int, int, float, str]]:
        raise NotImplementedError

    def _towers(self) -> int:
        """How many towers (GPUs) hold the maps: normalization runs within each."""
        return 1

    def _norm(self, h: Array, i: int, groups: int, train: bool) -> Array:
        """The normalization of layer ``i``, within each of ``groups`` towers."""
        if groups == 1:
            return _apply_norm(self.norm(name=f"norm{i}"), h, train)
        towers = jnp.split(h, groups, axis=-1)
        towers = [
            _apply_norm(self.norm(name=f"norm{i}_{t}"), tower, train)
            for t, tower in enumerate(towers)
        ]
        return jnp.concatenate(towers, axis=-1)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images, ``H, W >= 63`` (224 in the papers).
          train: dropout (rng ``'dropout'``) and batch statistics of ``norm``.

        Returns:
          ``(logits, features)``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)`` or is too small.
        """
        check_images(x, type(self).__name__, MIN_SIZE)
        weight = get_initializer("normal", stddev=0.01)
        f: dict[str, Array] = {}
        h = x
        for i, (width, k, s, p, groups, bias, order) in enumerate(self._layers(), 1):
            h = self.conv(
                width,
                k,
                strides=s,
                padding=p,
                groups=groups,
                kernel_init=weight,
                bias_init=get_initializer("constant", value=bias),
                dtype=self.dtype,
                name=f"conv{i}",
            )(h)
            f[f"conv{i}"] = h = self.act(h)
            for step in order:
                if step == "n" and self.norm is not None:
                    f[f"norm{i}"] = h = self._norm(h, i, self._towers(), train)
                elif step in "pP":
                    f[f"pool{i}"] = h = ops.max_pool(h, 3, 2, ceil_mode=step == "P")
        h = ops.adaptive_avg_pool(h, 6)
        f["pooled"] = h = h.reshape(h.shape[0], -1)
        h = self.act(_dense(4096, h.shape[-1], "paper", self.dtype, "fc6", self.hidden_bias)(h))
        f["fc6"] = h
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = self.act(_dense(4096, h.shape[-1], "paper", self.dtype, "fc7", self.hidden_bias)(h))
        f["fc7"] = f["pre_logits"] = h
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = _dense(self.num_classes, h.shape[-1], "paper", self.dtype, "fc8")(h)
        f["logits"] = logits
        return logits, f


class AlexNetPaper(_PaperNet):
    """AlexNet as in Krizhevsky, Sutskever & Hinton (2012) (see the module docstring).

    Modules ``conv1`` .. ``conv5``, ``norm1``/``norm2`` (``norm1_0``, ``norm1_1``, ... per
    tower), ``fc6``, ``fc7``, ``fc8``.

    Attributes:
      num_classes: output classes.
      dropout: dropout rate on the outputs of the two hidden dense layers.
      two_tower: the paper's two-GPU connectivity (``groups=2`` in the second, fourth
        and fifth convolutions, normalization within each tower).
      conv: the convolution (a ``Conv``-like partial).
      norm: the response normalization after the first two convolutions (default the
        paper's ``LocalResponseNorm``), or ``None``.
      act: the activation.
      dtype: computation dtype.
    """

    hidden_bias: ClassVar[float] = 1.0

    two_tower: bool = True

    def _towers(self) -> int:
        # Every layer's maps are split over the two GPUs, also those of conv1 and conv3,
        # whose kernels see both towers' inputs (groups 1): their normalization too runs
        # within each GPU's half.
        return 2 if self.two_tower else 1

    def _layers(self) -> list[tuple[int, int, int, int, int, float, str]]:
        g = 2 if self.two_tower else 1
        return [
            (96, 11, 4, 2, 1, 0.0, "np"),
            (256, 5, 1, 2, g, 1.0, "np"),
            (384, 3, 1, 1, 1, 0.0, ""),
            (384, 3, 1, 1, g, 1.0, ""),
            (256, 3, 1, 1, g, 1.0, "p"),
        ]


class ZFNet(_PaperNet):
    """ZFNet, Zeiler & Fergus (2014), Figure 3 (see the module docstring).

    Modules ``conv1`` .. ``conv5``, ``norm1``, ``norm2``, ``fc6``, ``fc7``, ``fc8``.

    Attributes:
      num_classes: output classes.
      dropout: dropout rate on the outputs of the two hidden dense layers.
      conv: the convolution (a ``Conv``-like partial).
      norm: the contrast normalization after the first two poolings (default
        AlexNet's ``LocalResponseNorm``), or ``None``.
      act: the activation.
      dtype: computation dtype.
    """

    def _layers(self) -> list[tuple[int, int, int, int, int, float, str]]:
        return [
            (96, 7, 2, 1, 1, 0.0, "Pn"),
            (256, 5, 2, 0, 1, 0.0, "Pn"),
            (384, 3, 1, 1, 1, 0.0, ""),
            (384, 3, 1, 1, 1, 0.0, ""),
            (256, 3, 1, 1, 1, 0.0, "p"),
        ]


#: torchvision's ``alexnet`` weights: the first linear layer sees a flattened 256x6x6
#: grid (channels-first there, channels-last here).
TORCHVISION_SPECS: dict[str, WeightSpec] = {
    "alexnet": WeightSpec(
        model=AlexNet,
        transforms={"classifier.1.weight": permute_flatten((256, 6, 6))},
        input_size=224,
        export=True,
    ),
}
