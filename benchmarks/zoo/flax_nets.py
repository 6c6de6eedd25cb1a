"""The small CNNs of the training-step benchmarks, each as cnn_jax and as plain flax.linen.

``MODULES`` maps a model name to ``(ours, flax)``: the same architecture written with
``cnn_jax.layers`` / ``cnn_jax.ops`` / ``cnn_jax.models`` and with plain ``flax.linen``
(``nn.Conv``, ``nn.BatchNorm``, ``nn.max_pool``, ``nn.ConvTranspose``); each is called
as ``module(x, train) -> logits``. ``benchmarks.zoo`` describes the models.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers, ops
from cnn_jax.models.lenet import LeNet5Modern
from cnn_jax.models.resnet import ResNet20

gelu = functools.partial(nn.gelu, approximate=False)


class Logits(nn.Module):
    """Drops the features dict of a cnn_jax model."""

    model: nn.Module

    def __call__(self, x: Any, train: bool = False) -> Any:
        """Logits of ``x`` (NHWC); ``train``: batch statistics in BatchNorm."""
        return self.model(x, train=train)[0]


class FlaxLeNet5(nn.Module):
    """LeNet5Modern in plain flax.linen: two conv5x5-ReLU-maxpool2 stages, 120-84-10 dense."""

    @nn.compact
    def __call__(self, x: Any, train: bool = False) -> Any:
        """Logits of ``x`` (NHWC); ``train``: batch statistics in BatchNorm."""
        x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(120)(x))
        x = nn.relu(nn.Dense(84)(x))
        return nn.Dense(10)(x)


class Airbench(nn.Module):
    """airbench94's network; ``flax=True`` builds it from plain flax.linen."""

    flax: bool = False
    widths: Sequence[int] = (64, 256, 256)

    @nn.compact
    def __call__(self, x: Any, train: bool = False) -> Any:
        """Logits of ``x`` (NHWC); ``train``: batch statistics in BatchNorm."""
        if self.flax:

            def conv(f: int, k: int, **kw: Any) -> nn.Module:
                return nn.Conv(f, (k, k), **kw)

            def norm(h: Any) -> Any:
                bn = nn.BatchNorm(use_running_average=not train, momentum=0.6, epsilon=1e-12)
                return bn(h)

            def pool(h: Any, k: int) -> Any:
                return nn.max_pool(h, (k, k), (k, k))

        else:
            conv = layers.Conv

            def norm(h: Any) -> Any:
                return layers.BatchNorm(momentum=0.6, epsilon=1e-12)(h, train=train)

            pool = ops.max_pool
        x = gelu(conv(24, 2, padding="VALID", use_bias=True)(x))
        for w in self.widths:
            x = conv(w, 3, padding="SAME", use_bias=False)(x)
            x = gelu(norm(pool(x, 2)))
            x = conv(w, 3, padding="SAME", use_bias=False)(x)
            x = gelu(norm(x))
        x = pool(x, 3).reshape(x.shape[0], -1)
        return nn.Dense(10, use_bias=False)(x) / 9.0


class FlaxBasicBlock(nn.Module):
    """ResNet-20's basic block in plain flax.linen, option-A (zero-padded) shortcut."""

    filters: int
    strides: int

    @nn.compact
    def __call__(self, x: Any, train: bool) -> Any:
        """Logits of ``x`` (NHWC); ``train``: batch statistics in BatchNorm."""
        bn = functools.partial(nn.BatchNorm, use_running_average=not train)
        s = (self.strides, self.strides)
        y = nn.Conv(self.filters, (3, 3), s, padding=1, use_bias=False)(x)
        y = nn.relu(bn()(y))
        y = bn()(nn.Conv(self.filters, (3, 3), padding=1, use_bias=False)(y))
        if self.strides != 1 or x.shape[-1] != self.filters:
            extra = self.filters - x.shape[-1]
            x = x[:, :: self.strides, :: self.strides, :]
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        return nn.relu(y + x)


class FlaxResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al. 2015) in plain flax.linen."""

    @nn.compact
    def __call__(self, x: Any, train: bool = False) -> Any:
        """Logits of ``x`` (NHWC); ``train``: batch statistics in BatchNorm."""
        x = nn.Conv(16, (3, 3), padding=1, use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        for i, w in enumerate((16, 32, 64)):
            for j in range(3):
                x = FlaxBasicBlock(w, 2 if i > 0 and j == 0 else 1)(x, train)
        return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


class XceptionBlock(nn.Module):
    """An Xception middle-flow block (Chollet 2017), global pooling, linear 10.

    Three times ReLU -> separable conv 3x3 -> BN, plus the identity;
    ``flax=True`` builds it from plain flax.linen.
    """

    flax: bool = False
    channels: int = 728

    @nn.compact
    def __call__(self, x: Any, train: bool = False) -> Any:
        """Logits of ``x`` (NHWC); ``train``: batch statistics in BatchNorm."""
        c = self.channels
        h = x
        for _ in range(3):
            h = nn.relu(h)
            if self.flax:
                h = nn.Conv(c, (3, 3), padding="SAME", feature_group_count=c, use_bias=False)(h)
                h = nn.Conv(c, (1, 1), use_bias=False)(h)
                h = nn.BatchNorm(use_running_average=not train)(h)
            else:
                h = layers.DepthwiseSeparableConv(c, 3, use_bias=False)(h)
                h = layers.BatchNorm()(h, train=train)
        h = h + x
        return nn.Dense(10)(jnp.mean(h, axis=(1, 2)))


class UNetDecoder(nn.Module):
    """A U-Net-like decoder (Ronneberger et al. 2015), per-pixel logits.

    From ``(N, H, W, 256)``: three times [transposed conv 2x2/2 -> conv3x3 -> BN -> ReLU],
    then a 1x1 conv to 10 classes; ``flax=True`` builds it from plain flax.linen.
    """

    flax: bool = False
    widths: Sequence[int] = (128, 64, 32)

    @nn.compact
    def __call__(self, x: Any, train: bool = False) -> Any:
        """Logits of ``x`` (NHWC); ``train``: batch statistics in BatchNorm."""
        for w in self.widths:
            if self.flax:
                x = nn.ConvTranspose(w, (2, 2), (2, 2), padding="VALID")(x)
                x = nn.Conv(w, (3, 3), padding="SAME", use_bias=False)(x)
                x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
            else:
                x = layers.ConvTranspose(w, 2, strides=2)(x)
                x = layers.Conv(w, 3, use_bias=False)(x)
                x = nn.relu(layers.BatchNorm()(x, train=train))
        conv1 = nn.Conv if self.flax else layers.Conv
        return conv1(10, (1, 1) if self.flax else 1)(x)


def modules() -> dict[str, tuple[nn.Module, nn.Module]]:
    """``name -> (ours, flax)`` modules, ``__call__(x, train) -> logits``."""
    return {
        "lenet5": (Logits(LeNet5Modern(num_classes=10)), FlaxLeNet5()),
        "airbench94": (Airbench(), Airbench(flax=True)),
        "resnet20": (Logits(ResNet20(num_classes=10)), FlaxResNet20()),
        "xception_block": (XceptionBlock(), XceptionBlock(flax=True)),
        "unet_decoder": (UNetDecoder(), UNetDecoder(flax=True)),
    }
