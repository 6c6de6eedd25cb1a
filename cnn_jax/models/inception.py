"""Inception v3 (Szegedy et al. 2016), as torchvision's ``inception_v3``.

"Rethinking the Inception Architecture for Computer Vision" (Szegedy, Vanhoucke,
Ioffe, Shlens & Wojna, CVPR 2016, arXiv:1512.00567), table 1: a stem of 3x3
convolutions (``Conv2d_1a_3x3`` ... ``Conv2d_4a_3x3``) and two 3x3/2 max pools
(299x299 -> 35x35x192), three modules of figure 5 (``Mixed_5b``-``5d``, 5x5
convolutions factorized into two 3x3 ones, torchvision's ``InceptionA``; torchvision
keeps one real 5x5 branch as in the TensorFlow release), a grid reduction
(``Mixed_6a``, section 7), four modules of figure 6 with 7x7 factorized into 1x7 and
7x1 (``Mixed_6b``-``6e``), a grid reduction (``Mixed_7a``), two modules of figure 7
with expanded filter banks (``Mixed_7b``, ``7c``), global average pooling, dropout
0.5 and a linear classifier. Every convolution is ``BasicConv2d`` (no bias, batch
norm with epsilon 1e-3, ReLU). The auxiliary classifier (section 4; ``AuxLogits``)
on the 17x17 output of ``Mixed_6e`` (a 5x5/3 average pool, a 1x1 convolution to 128
channels, a 5x5 convolution to 768, global average pooling, a linear layer) is used
in training only; its logits are ``features['aux_logits']``.

Input 299x299; the network itself works down to 75x75, but the auxiliary head needs a
17x17 ``Mixed_6e`` map, i.e. inputs of at least 299x299: training smaller inputs needs
``aux_logits=False`` (torchvision fails there too).

Parameters: 27,161,264 with the auxiliary head, 23,834,568 without (1000 classes).
Initialization is torchvision's ``init_weights=True``, as its code behaves:
convolution and linear weights from a normal truncated to ``[-2, 2]`` with standard
deviation 0.1, except the auxiliary ``fc`` (0.001); the 0.01 that torchvision means
for the auxiliary ``conv1`` is set on its ``BasicConv2d`` wrapper, which its init loop
never reads, so that convolution gets 0.1 too. Linear biases are PyTorch's default,
batch norm scale 1 and bias 0.

Module names are torchvision's (``Conv2d_1a_3x3`` with ``conv``/``bn``, ``Mixed_5b``
with ``branch1x1``, ``branch5x5_1``, ..., ``AuxLogits`` with ``conv0``/``conv1``/``fc``,
``fc``). Since ``branch5x5_1`` must stay as it is, ``TORCHVISION_SPECS`` uses the key
function ``inception_torch_key`` (names joined with ``.``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import Conv
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
from cnn_jax.models.googlenet import BasicConv2d, transform_input
from cnn_jax.weights import WeightSpec

__all__ = [
    "TORCHVISION_SPECS",
    "InceptionA",
    "InceptionAux",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "InceptionV3",
    "inception_torch_key",
]

#: The smallest ``Mixed_6e`` map the auxiliary head accepts (a 5x5/3 average pool,
#: then a 5x5 valid convolution).
AUX_MIN_SIZE = 17


def _avg3(x: Array) -> Array:
    """``F.avg_pool2d(x, 3, stride=1, padding=1)`` (padding counted in the divisor)."""
    return ops.avg_pool(x, 3, 1, padding=1, count_include_pad=True)


class InceptionA(nn.Module):
    """35x35 module (figure 5): 1x1, 5x5, double 3x3 and pooling branches.

    Attributes:
      pool_features: channels of the pooling branch (output ``224 + pool_features``).
      conv_block: ``BasicConv2d``-like partial.
    """

    pool_features: int
    conv_block: ModuleDef = BasicConv2d

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the module to ``(N, H, W, C)``; returns ``(N, H, W, 224 + pool_features)``."""
        c = self.conv_block
        b1 = c(64, 1, name="branch1x1")(x, train)
        b5 = c(48, 1, name="branch5x5_1")(x, train)
        b5 = c(64, 5, padding=2, name="branch5x5_2")(b5, train)
        b3 = c(64, 1, name="branch3x3dbl_1")(x, train)
        b3 = c(96, 3, padding=1, name="branch3x3dbl_2")(b3, train)
        b3 = c(96, 3, padding=1, name="branch3x3dbl_3")(b3, train)
        bp = c(self.pool_features, 1, name="branch_pool")(_avg3(x), train)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (section 7): strided 3x3, double 3x3 and max-pool branches.

    Attributes:
      conv_block: ``BasicConv2d``-like partial.
    """

    conv_block: ModuleDef = BasicConv2d

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the module to ``(N, H, W, C)``; returns ``(N, H', W', 480 + C)``."""
        c = self.conv_block
        b3 = c(384, 3, strides=2, name="branch3x3")(x, train)
        bd = c(64, 1, name="branch3x3dbl_1")(x, train)
        bd = c(96, 3, padding=1, name="branch3x3dbl_2")(bd, train)
        bd = c(96, 3, strides=2, name="branch3x3dbl_3")(bd, train)
        bp = ops.max_pool(x, 3, 2)
        return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
    """17x17 module (figure 6): 7x7 convolutions factorized into 1x7 and 7x1.

    Attributes:
      channels_7x7: inner channels of the factorized branches.
      conv_block: ``BasicConv2d``-like partial.
    """

    channels_7x7: int
    conv_block: ModuleDef = BasicConv2d

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the module to ``(N, H, W, C)``; returns ``(N, H, W, 768)``."""
        c, c7 = self.conv_block, self.channels_7x7
        row, col = dict(padding=(0, 3)), dict(padding=(3, 0))
        b1 = c(192, 1, name="branch1x1")(x, train)
        b7 = c(c7, 1, name="branch7x7_1")(x, train)
        b7 = c(c7, (1, 7), **row, name="branch7x7_2")(b7, train)
        b7 = c(192, (7, 1), **col, name="branch7x7_3")(b7, train)
        bd = c(c7, 1, name="branch7x7dbl_1")(x, train)
        bd = c(c7, (7, 1), **col, name="branch7x7dbl_2")(bd, train)
        bd = c(c7, (1, 7), **row, name="branch7x7dbl_3")(bd, train)
        bd = c(c7, (7, 1), **col, name="branch7x7dbl_4")(bd, train)
        bd = c(192, (1, 7), **row, name="branch7x7dbl_5")(bd, train)
        bp = c(192, 1, name="branch_pool")(_avg3(x), train)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: strided 3x3, 7x7-then-strided-3x3 and max-pool branches.

    Attributes:
      conv_block: ``BasicConv2d``-like partial.
    """

    conv_block: ModuleDef = BasicConv2d

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the module to ``(N, H, W, C)``; returns ``(N, H', W', 512 + C)``."""
        c = self.conv_block
        b3 = c(192, 1, name="branch3x3_1")(x, train)
        b3 = c(320, 3, strides=2, name="branch3x3_2")(b3, train)
        b7 = c(192, 1, name="branch7x7x3_1")(x, train)
        b7 = c(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7, train)
        b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7, train)
        b7 = c(192, 3, strides=2, name="branch7x7x3_4")(b7, train)
        bp = ops.max_pool(x, 3, 2)
        return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
    """8x8 module with expanded filter banks (figure 7): 1x3 and 3x1 side by side.

    Attributes:
      conv_block: ``BasicConv2d``-like partial.
    """

    conv_block: ModuleDef = BasicConv2d

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the module to ``(N, H, W, C)``; returns ``(N, H, W, 2048)``."""
        c = self.conv_block
        row, col = dict(padding=(0, 1)), dict(padding=(1, 0))
        b1 = c(320, 1, name="branch1x1")(x, train)
        b3 = c(384, 1, name="branch3x3_1")(x, train)
        b3 = jnp.concatenate(
            [
                c(384, (1, 3), **row, name="branch3x3_2a")(b3, train),
                c(384, (3, 1), **col, name="branch3x3_2b")(b3, train),
            ],
            axis=-1,
        )
        bd = c(448, 1, name="branch3x3dbl_1")(x, train)
        bd = c(384, 3, padding=1, name="branch3x3dbl_2")(bd, train)
        bd = jnp.concatenate(
            [
                c(384, (1, 3), **row, name="branch3x3dbl_3a")(bd, train),
                c(384, (3, 1), **col, name="branch3x3dbl_3b")(bd, train),
            ],
            axis=-1,
        )
        bp = c(192, 1, name="branch_pool")(_avg3(x), train)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(nn.Module):
    """The auxiliary classifier on the 17x17 grid (section 4), torchvision's ``InceptionAux``.

    5x5/3 average pool, ``conv0`` (1x1, 128), ``conv1`` (5x5 valid, 768), global average
    pooling, ``fc``.

    Attributes:
      num_classes: outputs.
      conv_block: ``BasicConv2d``-like partial.
      dtype: computation dtype.
    """

    num_classes: int
    conv_block: ModuleDef = BasicConv2d
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Computes the auxiliary logits.

        Args:
          x: ``(N, H, W, 768)`` with ``H, W >= 17``.
          train: batch statistics in training mode.

        Returns:
          ``(N, num_classes)`` logits.
        """
        h = ops.avg_pool(x, 5, 3)
        h = self.conv_block(128, 1, name="conv0")(h, train)
        h = self.conv_block(768, 5, name="conv1")(h, train)
        h = jnp.mean(h, axis=(1, 2))
        return torch_dense(self.num_classes, h.shape[-1], 0.001, self.dtype, name="fc")(h)


class InceptionV3(nn.Module):
    """Inception v3 as torchvision's ``inception_v3`` (see the module docstring).

    Attributes:
      num_classes: output classes.
      aux_logits: build the auxiliary classifier (``AuxLogits``); its logits are
        ``features['aux_logits']`` in training only.
      transform_input: rescale ImageNet-normalized inputs to the ``[-1, 1]``
        normalization of the ported weights (see ``googlenet.transform_input``).
      dropout: dropout rate before ``fc``.
      conv: the convolution.
      norm: the normalization (default batch norm with epsilon 1e-3).
      act: the activation.
      dtype: computation dtype.
    """

    num_classes: int = 1000
    aux_logits: bool = True
    transform_input: bool = False
    dropout: float = 0.5
    conv: ModuleDef = Conv
    norm: ModuleDef = TorchInceptionBatchNorm
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
          x: ``(N, H, W, 3)`` images, 299x299 (at least 75x75; at least 299x299 to
            train with ``aux_logits``).
          train: batch statistics, dropout and the auxiliary classifier.

        Returns:
          ``(logits, features)``: ``features`` holds every stem convolution's and every
          ``Mixed_*`` module's output, ``pre_logits`` (the pooled 2048 values) and, in
          training with ``aux_logits``, ``aux_logits``.

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)``, too small for the
            auxiliary head in training.
        """
        check_images(x, "InceptionV3")
        num_classes, dropout = self.num_classes, self.dropout
        if self.transform_input:
            x = transform_input(x)
        block = functools.partial(
            BasicConv2d,
            conv=self.conv,
            norm=self.norm,
            act=self.act,
            kernel_init=torch_trunc_normal(0.1),
            dtype=self.dtype,
        )
        f: dict[str, Array] = {}
        h = x
        stem = [
            ("Conv2d_1a_3x3", 32, 3, dict(strides=2)),
            ("Conv2d_2a_3x3", 32, 3, {}),
            ("Conv2d_2b_3x3", 64, 3, dict(padding=1)),
            ("maxpool1", 0, 0, {}),
            ("Conv2d_3b_1x1", 80, 1, {}),
            ("Conv2d_4a_3x3", 192, 3, {}),
            ("maxpool2", 0, 0, {}),
        ]
        for name, features, k, kwargs in stem:
            if name.startswith("maxpool"):
                h = ops.max_pool(h, 3, 2)
                continue
            h = block(features, k, **kwargs, name=name)(h, train)
            f[name] = h
        mixed = [
            ("Mixed_5b", functools.partial(InceptionA, 32)),
            ("Mixed_5c", functools.partial(InceptionA, 64)),
            ("Mixed_5d", functools.partial(InceptionA, 64)),
            ("Mixed_6a", InceptionB),
            ("Mixed_6b", functools.partial(InceptionC, 128)),
            ("Mixed_6c", functools.partial(InceptionC, 160)),
            ("Mixed_6d", functools.partial(InceptionC, 160)),
            ("Mixed_6e", functools.partial(InceptionC, 192)),
            ("Mixed_7a", InceptionD),
            ("Mixed_7b", InceptionE),
            ("Mixed_7c", InceptionE),
        ]
        for name, module in mixed:
            h = module(conv_block=block, name=name)(h, train)
            f[name] = h
            if name == "Mixed_6e" and self.aux_logits and (train or self.is_initializing()):
                aux = self._aux(h, x, num_classes, block, train)
                if train:
                    f["aux_logits"] = aux
        h = jnp.mean(h, axis=(1, 2))
        f["pre_logits"] = h
        h = nn.Dropout(dropout, deterministic=not train)(h)
        logits = torch_dense(num_classes, h.shape[-1], 0.1, self.dtype, name="fc")(h)
        return logits, f

    def _aux(self, h: Array, x: Array, num_classes: int, block: ModuleDef, train: bool) -> Array:
        """Runs ``AuxLogits`` on ``Mixed_6e``'s output ``h`` (for input ``x``)."""
        if min(h.shape[1:3]) < AUX_MIN_SIZE:
            if train:
                raise ValueError(
                    f"InceptionV3's auxiliary classifier needs a {AUX_MIN_SIZE}x{AUX_MIN_SIZE} "
                    f"Mixed_6e map (inputs of at least 299x299); `x` of shape {tuple(x.shape)} "
                    f"gives {h.shape[1]}x{h.shape[2]}: train it with `aux_logits=False`"
                )
            # Initialization only: the head's parameters do not depend on the map's size.
            h = jnp.zeros((h.shape[0], AUX_MIN_SIZE, AUX_MIN_SIZE, h.shape[-1]), h.dtype)
        return InceptionAux(num_classes, block, self.dtype, name="AuxLogits")(h, train)


def inception_torch_key(path: tuple[str, ...]) -> str:
    """Flax module path -> torchvision key prefix: names joined with ``.``.

    torchvision's Inception v3 names (``branch5x5_1``, ``branch7x7dbl_3``) contain
    ``_<digit>`` that ``default_torch_key`` would split.

    Args:
      path: module names from the root.

    Returns:
      The dotted prefix, e.g. ``Mixed_5b.branch5x5_1.conv``.
    """
    return ".".join(path)


#: ``inception_v3``: torchvision's ``inception_v3()`` (``aux_logits=True``), with
#: ``transform_input=True`` as torchvision uses its ImageNet weights.
TORCHVISION_SPECS: dict[str, WeightSpec] = {
    "inception_v3": WeightSpec(
        model=InceptionV3,
        key_fn=inception_torch_key,
        input_size=299,
        export=True,
        model_kwargs={"transform_input": True},
    ),
}
