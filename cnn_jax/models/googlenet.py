"""GoogLeNet / Inception v1 (Szegedy et al. 2014), as torchvision's ``googlenet``.

"Going Deeper with Convolutions" (Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan,
Vanhoucke & Rabinovich, CVPR 2015, arXiv:1409.4842), table 1: a 7x7/2 convolution,
3x3/2 max pool, a 1x1 then a 3x3 convolution, 3x3/2 max pool, inception modules
3a-3b, max pool, 4a-4e, max pool, 5a-5b, global average pooling, dropout and a linear
classifier. An inception module concatenates four branches: a 1x1 convolution; a 1x1
reduction then a 3x3 convolution; a 1x1 reduction then the "5x5" convolution; a 3x3
max pool (stride 1) then a 1x1 projection. Two auxiliary classifiers (section 5), on
the outputs of 4a and 4d, each a 4x4 average pool (torchvision: adaptive, to 4x4), a
1x1 convolution to 128 channels, a 1024-unit ReLU layer, 70% dropout and a linear
classifier, are used in training only: their losses are added with weight 0.3.

As torchvision builds it, with its deviations from the paper:

* every convolution is ``BasicConv2d``: a convolution without bias, batch norm
  (epsilon 1e-3; the network predates batch norm) and ReLU; no local response norm;
* **the "5x5" branch uses a 3x3 convolution** (torchvision issue #906: a bug kept
  for compatibility with its ported weights); ``paper_5x5=True`` builds the paper's
  true 5x5 convolution there instead (padding 2; 380,928 more parameters than the
  default: ``16 * ch5x5red * ch5x5`` per module; torchvision's weights do not fit it);
* max pools use ``ceil_mode=True``; the last one is 2x2/2 instead of 3x3/2;
* the auxiliary heads pool adaptively to 4x4 (any input size), their ``fc1`` reads
  the 2048 flattened values, and their dropout is 0.7; the main dropout is 0.2
  (the paper: 0.4).

Parameters: 6,624,904 without the auxiliary heads, 13,004,888 with them (1000
classes). Initialization is torchvision's: convolution and linear weights from a
normal with standard deviation 0.01 truncated to ``[-2, 2]``, PyTorch's default
``Linear`` biases, batch norm scale 1 and bias 0.

Module names mirror torchvision's (``conv1`` with ``conv``/``bn``, ``inception3a`` with
``branch1``, ``branch2_0``, ``branch2_1``, ``branch3_0``, ``branch3_1``, ``branch4_1``,
``aux1`` with ``conv``/``fc1``/``fc2``, ``fc``), so ``cnn_jax.weights.from_torch`` maps
``googlenet().state_dict()`` with its default key function; the flatten before the
auxiliary ``fc1`` is channels-last here, hence a ``permute_flatten`` transform.

``__call__`` returns ``(logits, features)``; in training with ``aux_logits`` the
auxiliary logits are ``features['aux_logits1']`` (after 4a) and
``features['aux_logits2']`` (after 4d), for a loss ``main + 0.3 * (aux1 + aux2)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import Conv
from cnn_jax.layers.initializers import Initializer
from cnn_jax.models._common import (
    Array,
    ModuleDef,
    TorchInceptionBatchNorm,
    check_images,
    check_positive_int,
    check_rate,
    torch_dense,
    torch_trunc_normal,
)
from cnn_jax.ops.padding import PaddingLike
from cnn_jax.weights import WeightSpec, permute_flatten

__all__ = [
    "INCEPTION_V1_CONFIG",
    "TORCHVISION_SPECS",
    "BasicConv2d",
    "GoogLeNet",
    "Inception",
    "InceptionAux",
    "TorchBatchNorm",
    "torch_trunc_normal",
    "transform_input",
]

#: torchvision's ``BasicConv2d`` batch norm: epsilon 1e-3 (momentum 0.1 in PyTorch's
#: convention, 0.9 in ours); ``cnn_jax.models._common.TorchInceptionBatchNorm``.
TorchBatchNorm = TorchInceptionBatchNorm

#: Per module: (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection), table 1.
INCEPTION_V1_CONFIG: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def transform_input(x: Array) -> Array:
    """The ``transform_input`` of torchvision: ImageNet-normalized RGB to ``[-1, 1]`` scaling.

    Maps ``(x - mean) / std`` (torchvision's normalization) to ``(x' - 0.5) / 0.5``, the
    normalization of the weights ported from TensorFlow, channel by channel.

    Args:
      x: ``(N, H, W, 3)`` images.

    Returns:
      The transformed images.

    Raises:
      ValueError: if ``x`` does not have 3 channels.
    """
    if x.shape[-1] != 3:
        raise ValueError(f"`transform_input` needs 3 (RGB) channels, got `x` of shape {x.shape}")
    std = jnp.asarray([0.229, 0.224, 0.225], x.dtype)
    mean = jnp.asarray([0.485, 0.456, 0.406], x.dtype)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


class BasicConv2d(nn.Module):
    """torchvision's ``BasicConv2d``: convolution (no bias), batch norm, activation.

    Submodules ``conv`` and ``bn``, as torchvision.

    Attributes:
      features: output channels.
      kernel_size: window, an int or ``(kh, kw)``.
      strides: strides.
      padding: PyTorch-style ints (symmetric) or any ``cnn_jax.ops`` padding.
      conv: the convolution.
      norm: the normalization.
      act: the activation.
      kernel_init: the convolution's initializer.
      dtype: computation dtype.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: PaddingLike = 0
    conv: ModuleDef = Conv
    norm: ModuleDef = TorchBatchNorm
    act: Callable[[Array], Array] = nn.relu
    kernel_init: Initializer | str = "lecun_normal"
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies convolution, normalization and activation.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, H', W', features)``.
        """
        y = self.conv(
            self.features,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_bias=False,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            name="conv",
        )(x)
        y = self.norm(dtype=self.dtype, name="bn")(y, train=train)
        return self.act(y)


class Inception(nn.Module):
    """An inception module (Szegedy et al. 2014, figure 2b), as torchvision.

    Four branches concatenated on channels: ``branch1`` (1x1), ``branch2_0``/``branch2_1``
    (1x1 reduce, 3x3), ``branch3_0``/``branch3_1`` (1x1 reduce, then **3x3** where the
    paper has 5x5: torchvision's layout), ``branch4_1`` (after a 3x3/1 max pool; 1x1).

    Attributes:
      ch1x1: channels of the 1x1 branch.
      ch3x3red: the 3x3 branch's reduction.
      ch3x3: the 3x3 branch's output.
      ch5x5red: the "5x5" branch's reduction.
      ch5x5: the "5x5" branch's output.
      pool_proj: channels of the pooling branch's projection.
      conv_block: ``BasicConv2d``-like partial (conv, norm, act, init bound).
      ch5x5_kernel: the "5x5" branch's kernel size: 3 (torchvision) or 5 (the paper).
    """

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    conv_block: ModuleDef = BasicConv2d
    ch5x5_kernel: int = 3

    def __post_init__(self) -> None:
        if self.ch5x5_kernel not in (3, 5):
            raise ValueError(f"`ch5x5_kernel` (={self.ch5x5_kernel!r}) must be 3 or 5")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the module.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, H, W, ch1x1 + ch3x3 + ch5x5 + pool_proj)``.
        """
        block = self.conv_block
        b1 = block(self.ch1x1, 1, name="branch1")(x, train)
        b2 = block(self.ch3x3red, 1, name="branch2_0")(x, train)
        b2 = block(self.ch3x3, 3, padding=1, name="branch2_1")(b2, train)
        b3 = block(self.ch5x5red, 1, name="branch3_0")(x, train)
        k = self.ch5x5_kernel
        b3 = block(self.ch5x5, k, padding=k // 2, name="branch3_1")(b3, train)
        b4 = ops.max_pool(x, 3, 1, padding=1, ceil_mode=True)
        b4 = block(self.pool_proj, 1, name="branch4_1")(b4, train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
    """GoogLeNet's auxiliary classifier (section 5), as torchvision's ``InceptionAux``.

    Adaptive average pooling to 4x4, ``conv`` (1x1 to 128 channels), flatten (2048
    values, channels-last), ``fc1`` (1024, activation), dropout, ``fc2``.

    Attributes:
      num_classes: outputs.
      dropout: dropout rate before ``fc2``.
      conv_block: ``BasicConv2d``-like partial.
      act: the activation after ``fc1``.
      dtype: computation dtype.
    """

    num_classes: int
    dropout: float = 0.7
    conv_block: ModuleDef = BasicConv2d
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Computes the auxiliary logits.

        Args:
          x: ``(N, H, W, C)``, the output of inception 4a or 4d.
          train: batch statistics and dropout in training mode.

        Returns:
          ``(N, num_classes)`` logits.
        """
        h = ops.adaptive_avg_pool(x, 4)
        h = self.conv_block(128, 1, name="conv")(h, train)
        h = h.reshape(h.shape[0], -1)
        h = self.act(torch_dense(1024, h.shape[-1], 0.01, self.dtype, name="fc1")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return torch_dense(self.num_classes, 1024, 0.01, self.dtype, name="fc2")(h)


class GoogLeNet(nn.Module):
    """GoogLeNet (Inception v1) as torchvision's ``googlenet`` (see the module docstring).

    Attributes:
      num_classes: output classes.
      aux_logits: build the two auxiliary classifiers (``aux1``, ``aux2``); their
        logits are returned in ``features`` in training only.
      transform_input: rescale ImageNet-normalized inputs to the ``[-1, 1]``
        normalization of the ported weights (see ``transform_input``).
      dropout: dropout rate before ``fc``.
      dropout_aux: dropout rate of the auxiliary classifiers.
      conv: the convolution.
      norm: the normalization (default batch norm with epsilon 1e-3).
      act: the activation.
      dtype: computation dtype.
      paper_5x5: give the "5x5" branches the paper's 5x5 kernels (default: torchvision's
        3x3, which its ported weights need).
    """

    num_classes: int = 1000
    aux_logits: bool = True
    transform_input: bool = False
    dropout: float = 0.2
    dropout_aux: float = 0.7
    conv: ModuleDef = Conv
    norm: ModuleDef = TorchBatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None
    paper_5x5: bool = False

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        if not isinstance(self.paper_5x5, bool):
            raise ValueError(f"`paper_5x5` (={self.paper_5x5!r}) must be a bool")
        check_rate(self.dropout, "dropout")
        check_rate(self.dropout_aux, "dropout_aux")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, 3)`` images, at least 15x15 (224x224 in the paper).
          train: batch statistics, dropout and the auxiliary classifiers.

        Returns:
          ``(logits, features)``: ``features`` holds ``conv1``, ``conv3``, every inception
          module's output, ``pre_logits`` (the pooled 1024 values) and, in training with
          ``aux_logits``, ``aux_logits1`` and ``aux_logits2``.

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)``.
        """
        check_images(x, "GoogLeNet")
        num_classes, dropout, dropout_aux = self.num_classes, self.dropout, self.dropout_aux
        if self.transform_input:
            x = transform_input(x)
        block = functools.partial(
            BasicConv2d,
            conv=self.conv,
            norm=self.norm,
            act=self.act,
            kernel_init=torch_trunc_normal(0.01),
            dtype=self.dtype,
        )
        # The auxiliary heads also run at initialization, so that their parameters exist.
        run_aux = bool(self.aux_logits) and (train or self.is_initializing())
        f: dict[str, Array] = {}
        h = block(64, 7, strides=2, padding=3, name="conv1")(x, train)
        f["conv1"] = h
        h = ops.max_pool(h, 3, 2, ceil_mode=True)
        h = block(64, 1, name="conv2")(h, train)
        h = block(192, 3, padding=1, name="conv3")(h, train)
        f["conv3"] = h
        h = ops.max_pool(h, 3, 2, ceil_mode=True)
        for name, cfg in INCEPTION_V1_CONFIG.items():
            if name in ("inception4a", "inception5a"):
                h = ops.max_pool(h, 3 if name == "inception4a" else 2, 2, ceil_mode=True)
            k5 = 5 if self.paper_5x5 else 3
            h = Inception(*cfg, conv_block=block, ch5x5_kernel=k5, name=name)(h, train)
            f[name] = h
            if run_aux and name in ("inception4a", "inception4d"):
                aux_name = "aux1" if name == "inception4a" else "aux2"
                aux = InceptionAux(
                    num_classes, dropout_aux, block, self.act, self.dtype, name=aux_name
                )(h, train)
                if train:
                    f[f"aux_logits{aux_name[-1]}"] = aux
        h = jnp.mean(h, axis=(1, 2))
        f["pre_logits"] = h
        h = nn.Dropout(dropout, deterministic=not train)(h)
        logits = torch_dense(num_classes, h.shape[-1], 0.01, self.dtype, name="fc")(h)
        return logits, f


def _aux_transforms() -> dict[str, Any]:
    return {f"aux{i}.fc1.weight": permute_flatten((128, 4, 4)) for i in (1, 2)}


#: ``googlenet``: torchvision's model with its auxiliary heads, the layout of
#: ``googlenet().state_dict()`` and of torchvision's ImageNet file (which holds
#: ``aux1``/``aux2``, untrained); ``googlenet_noaux``: ``googlenet(aux_logits=False)``,
#: without the ``aux1``/``aux2`` keys. Both use ``transform_input=True``, as torchvision
#: does with its ImageNet weights (ported from TensorFlow, inputs in ``[-1, 1]``).
TORCHVISION_SPECS: dict[str, WeightSpec] = {
    "googlenet": WeightSpec(
        model=GoogLeNet,
        transforms=_aux_transforms(),
        input_size=224,
        export=True,
        model_kwargs={"transform_input": True},
    ),
    "googlenet_noaux": WeightSpec(
        model=functools.partial(GoogLeNet, aux_logits=False),
        input_size=224,
        export=True,
        model_kwargs={"transform_input": True},
    ),
}
