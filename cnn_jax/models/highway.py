"""Convolutional highway networks (Srivastava, Greff & Schmidhuber 2015) for CIFAR-10.

"Training Very Deep Networks" (NeurIPS 2015, arXiv:1507.06228; "Highway Networks",
arXiv:1505.00387): a highway layer computes

    y = H(x) * T(x) + x * (1 - T(x)),

with a transform ``H`` and a transform gate ``T(x) = sigmoid(W_T x + b_T)`` in
``(0, 1)``; ``1 - T`` is the carry gate. In the convolutional variant ``H`` and
``W_T`` are 3x3 convolutions of the same width as ``x``. The gate bias ``b_T`` starts
negative ("e.g. -1, -3", section 2.2 of the NeurIPS paper), so that at initialization
the layers mostly carry their input (``T ~ sigmoid(b_T)``, 0.12 for the default -2).

``HighwayNet`` lays the layers out as the CIFAR ResNets of He et al. 2015, so that
the three can be compared at equal depth: a 3x3 convolution to 16 channels, three
stages of ``n`` highway layers of 16, 32, 64 channels, a 3x3 convolution with stride 2
before stages 2 and 3 (the width changes, where a highway layer cannot carry), global
average pooling and a linear classifier: ``3n + 4`` weighted layers along the path
(depth 10 is ``n = 2``, 100 is ``n = 32``). Departure from the paper, whose highway
networks predate batch normalization: ``H`` is ``relu(bn(conv(x)))``, and the stem
and the strided convolutions are followed by batch norm and ReLU, as in the residual
and plain networks it is compared with. Convolution init as ``ResNetCifar``
(Kaiming-normal ``fan_out``); the gate convolution has a bias, the others none.
"""

from __future__ import annotations

import functools
import numbers
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

__all__ = ["HighwayLayer", "HighwayNet", "highway_stage_size"]


def highway_stage_size(depth: Any) -> int:
    """Highway layers per stage ``n`` of a ``HighwayNet`` of ``depth = 3n + 4``.

    Raises:
      ValueError: naming ``depth`` if it is not ``3n + 4`` with ``n >= 1``.
    """
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 7 or (depth - 4) % 3:
        raise ValueError(f"`depth` (={depth!r}) must be an int 3n + 4 with n >= 1 (10, 13, ...)")
    return (depth - 4) // 3


class HighwayLayer(nn.Module):
    """``y = H(x) * T(x) + x * (1 - T(x))`` with 3x3 convolutions (module docstring).

    Attributes:
      features: channels of ``x`` (and of ``H`` and ``T``).
      gate_bias: initial transform-gate bias ``b_T`` (negative: carry at first).
      conv: the convolution (init bound by the model; ``use_bias`` is set here).
      norm: the normalization of ``H``.
      act: the activation of ``H``.
    """

    features: int
    gate_bias: float = -2.0
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu

    def setup(self) -> None:
        """Declares ``conv_h``, ``norm_h`` (of ``H``) and ``conv_t`` (of ``T``)."""
        self.conv_h = self.conv(self.features, 3, padding=1, use_bias=False)
        self.norm_h = self.norm()
        self.conv_t = self.conv(
            self.features,
            3,
            padding=1,
            use_bias=True,
            bias_init=nn.initializers.constant(self.gate_bias),
        )

    def transform(self, x: Array, train: bool = False) -> Array:
        """``H(x) = act(norm(conv_h(x)))``, the same shape as ``x``."""
        return self.act(self.norm_h(self.conv_h(x), train=train))

    def gate(self, x: Array) -> Array:
        """``T(x) = sigmoid(conv_t(x))``, the same shape as ``x``."""
        return nn.sigmoid(self.conv_t(x))

    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the layer.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``H(x) * T(x) + x * (1 - T(x))``, ``(N, H, W, C)``.
        """
        t = self.gate(x)
        return self.transform(x, train) * t + x * (1.0 - t)


class HighwayNet(nn.Module):
    """A convolutional highway network for CIFAR-10 (module docstring), depth ``3n + 4``.

    Attributes:
      depth: weighted layers along the path, ``3n + 4`` (10 .. 100 in the paper's range).
      widths: channels of the stages.
      gate_bias: initial transform-gate bias of every highway layer (negative).
      num_classes: output classes.
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization (a ``BatchNorm``-like partial, called with ``train``).
      act: the activation.
      dtype: computation dtype.
    """

    depth: int = 19
    widths: Sequence[int] = (16, 32, 64)
    gate_bias: float = -2.0
    num_classes: int = 10
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        highway_stage_size(self.depth)
        check_positive_ints(self.widths, "widths")
        check_positive_int(self.num_classes, "num_classes")
        if isinstance(self.gate_bias, bool) or not isinstance(self.gate_bias, numbers.Real):
            raise ValueError(f"`gate_bias` (={self.gate_bias!r}) must be a real number")
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
        check_images(x, "HighwayNet")
        n = highway_stage_size(self.depth)
        conv = functools.partial(self.conv, kernel_init=TORCH_CONV_INIT_FAN_OUT, dtype=self.dtype)
        norm = functools.partial(self.norm, dtype=self.dtype)
        features: dict[str, Array] = {}
        h = x
        for i, w in enumerate(tuple(self.widths)):
            name = "conv1" if i == 0 else f"down{i + 1}"
            h = conv(w, 3, strides=1 if i == 0 else 2, padding=1, use_bias=False, name=name)(h)
            h = self.act(norm(name=f"{name}_bn")(h, train=train))
            if i == 0:
                features["stem"] = h
            for j in range(n):
                layer = HighwayLayer(
                    w, self.gate_bias, conv, norm, self.act, name=f"layer{i + 1}_{j}"
                )
                h = layer(h, train)
            features[f"layer{i + 1}"] = h
        h = ops.global_avg_pool(h)
        features["pre_logits"] = h
        logits = torch_linear(self.num_classes, h.shape[-1], self.dtype, name="fc")(h)
        return logits, features
