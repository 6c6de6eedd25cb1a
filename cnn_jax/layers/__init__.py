"""Flax linen modules over ``cnn_jax.ops``: convolutions, norms, activations, initializers."""

from cnn_jax.layers import activations, initializers, norm
from cnn_jax.layers.activations import (
    GatedActivation,
    Maxout,
    PReLU,
    activation_names,
    gated_activation,
    gated_tanh,
    get_activation,
)
from cnn_jax.layers.capsules import PrimaryCaps, RoutingCaps, dynamic_routing, squash
from cnn_jax.layers.conv import (
    Conv,
    ConvTranspose,
    DepthwiseConv,
    DepthwiseSeparableConv,
    LocallyConnected,
    TiledConv,
)
from cnn_jax.layers.initializers import get_initializer, initializer_names
from cnn_jax.layers.norm import (
    BatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    LocalResponseNorm,
    local_response_norm,
)

__all__ = [
    "BatchNorm",
    "Conv",
    "ConvTranspose",
    "DepthwiseConv",
    "DepthwiseSeparableConv",
    "GatedActivation",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "LocalResponseNorm",
    "LocallyConnected",
    "Maxout",
    "PReLU",
    "PrimaryCaps",
    "RoutingCaps",
    "TiledConv",
    "activation_names",
    "activations",
    "dynamic_routing",
    "gated_activation",
    "gated_tanh",
    "get_activation",
    "get_initializer",
    "initializer_names",
    "initializers",
    "local_response_norm",
    "norm",
    "squash",
]
