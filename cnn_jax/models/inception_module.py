"""An inception module with and without its 1x1 reductions, and a small CIFAR net of them.

Szegedy et al. 2014 ("Going Deeper with Convolutions"), figure 2: the naive module (a)
concatenates a 1x1, a 3x3 and a 5x5 convolution of the input and a 3x3/1 max pool of
it; the module with dimension reductions (b) puts 1x1 convolutions before the 3x3 and
5x5 ones and after the pool. Without reductions the 3x3 and 5x5 convolutions read
every input channel, and the pool branch passes all of them on, so the output grows
by the input's width at every module. ``InceptionModule(reduce=...)`` is either; its
``ch*`` attributes are table 1's (the reductions are ignored when ``reduce=False``).
Every convolution is followed by batch norm and ReLU (``googlenet.BasicConv2d``),
with a true 5x5 kernel.

``InceptionCifar``: a 3x3 stem convolution, two modules, a 3x3/2 max pool, one module,
global average pooling and a linear classifier, on 32x32 images, with the modules of
inception 3a, 3b and 4a scaled by ``width`` (1.0: table 1's channels). With
``reduce=False`` the same branch outputs are kept, only the reductions and the pool
projection are gone: the comparison of parameters, FLOPs and accuracy that figure 2
motivates.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import Conv
from cnn_jax.models._common import Array, check_images, check_positive_int
from cnn_jax.models.googlenet import INCEPTION_V1_CONFIG, BasicConv2d, TorchBatchNorm

__all__ = ["InceptionCifar", "InceptionModule"]


class InceptionModule(nn.Module):
    """Figure 2 (b) (``reduce=True``) or (a) (``reduce=False``) of the paper.

    Attributes:
      ch1x1: the 1x1 branch's channels.
      ch3x3red: the 3x3 branch's 1x1 reduction (with ``reduce``).
      ch3x3: the 3x3 branch's output.
      ch5x5red: the 5x5 branch's 1x1 reduction (with ``reduce``).
      ch5x5: the 5x5 branch's output.
      pool_proj: the pool branch's 1x1 projection (with ``reduce``).
      reduce: use the 1x1 reductions and projection.
      conv_block: a ``BasicConv2d``-like partial.
    """

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    reduce: bool = True
    conv_block: Any = BasicConv2d

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the module.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, H, W, ch1x1 + ch3x3 + ch5x5 + P)``, ``P`` = ``pool_proj`` with
          reductions, ``C`` without.
        """
        block = self.conv_block
        b1 = block(self.ch1x1, 1, name="branch1")(x, train)
        b2, b3, b4 = x, x, ops.max_pool(x, 3, 1, padding=1)
        if self.reduce:
            b2 = block(self.ch3x3red, 1, name="branch2_0")(b2, train)
            b3 = block(self.ch5x5red, 1, name="branch3_0")(b3, train)
            b4 = block(self.pool_proj, 1, name="branch4_1")(b4, train)
        b2 = block(self.ch3x3, 3, padding=1, name="branch2_1")(b2, train)
        b3 = block(self.ch5x5, 5, padding=2, name="branch3_1")(b3, train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


def _scaled(cfg: tuple[int, ...], width: float) -> tuple[int, ...]:
    return tuple(max(1, round(c * width)) for c in cfg)


class InceptionCifar(nn.Module):
    """A small CIFAR network of three inception modules (module docstring).

    Attributes:
      num_classes: outputs.
      reduce: the modules' 1x1 reductions.
      width: the factor on table 1's channels (and on the 192-channel stem).
      dtype: computation dtype.
    """

    num_classes: int = 10
    reduce: bool = True
    width: float = 0.25
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        if not isinstance(self.reduce, bool):
            raise ValueError(f"`reduce` (={self.reduce!r}) must be a bool")
        if (
            isinstance(self.width, bool)
            or not isinstance(self.width, (int, float))
            or not (0 < self.width <= 4)
        ):
            raise ValueError(f"`width` (={self.width!r}) must be a number in (0, 4]")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images (32x32 for CIFAR).
          train: batch statistics in training mode.

        Returns:
          ``(logits, features)`` with ``stem``, ``inception3a``, ``inception3b``,
          ``inception4a`` and ``pre_logits``.
        """
        check_images(x, "InceptionCifar", 2)
        block = functools.partial(
            BasicConv2d, conv=Conv, norm=TorchBatchNorm, kernel_init="he_normal", dtype=self.dtype
        )
        f: dict[str, Array] = {}
        h = block(_scaled((192,), self.width)[0], 3, padding=1, name="stem")(x, train)
        f["stem"] = h
        for name in ("inception3a", "inception3b", "inception4a"):
            if name == "inception4a":
                h = ops.max_pool(h, 3, 2, padding=1)
            cfg = _scaled(INCEPTION_V1_CONFIG[name], self.width)
            h = InceptionModule(*cfg, reduce=self.reduce, conv_block=block, name=name)(h, train)
            f[name] = h
        h = jnp.mean(h, axis=(1, 2))
        f["pre_logits"] = h
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(h)
        return logits, f
