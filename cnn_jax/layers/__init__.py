"""Flax linen modules over ``cnn_jax.ops``, plus initializers by name."""

from cnn_jax.layers import initializers
from cnn_jax.layers.conv import (
    Conv,
    ConvTranspose,
    DepthwiseConv,
    DepthwiseSeparableConv,
    LocallyConnected,
    TiledConv,
)
from cnn_jax.layers.initializers import get_initializer, initializer_names

__all__ = [
    "Conv",
    "ConvTranspose",
    "DepthwiseConv",
    "DepthwiseSeparableConv",
    "LocallyConnected",
    "TiledConv",
    "get_initializer",
    "initializer_names",
    "initializers",
]
