"""Weights from and to PyTorch (torchvision) and Keras, with no code executed from files.

Typical use::

    from cnn_jax import weights
    model, variables = weights.load_torchvision("resnet50", "resnet50.pth")
    logits, features = model.apply(variables, images, train=False)
"""

from cnn_jax.weights.convert import (
    WeightMismatchError,
    WeightSpec,
    default_keras_key,
    default_torch_key,
    from_keras,
    from_torch,
    permute_flatten,
    to_torch,
)
from cnn_jax.weights.io import load_keras_weights, load_state_dict, save_state_dict
from cnn_jax.weights.registry import (
    export_torchvision,
    keras_specs,
    load_keras,
    load_torchvision,
    torchvision_specs,
)

__all__ = [
    "WeightMismatchError",
    "WeightSpec",
    "default_keras_key",
    "default_torch_key",
    "export_torchvision",
    "from_keras",
    "from_torch",
    "keras_specs",
    "load_keras",
    "load_keras_weights",
    "load_state_dict",
    "load_torchvision",
    "permute_flatten",
    "save_state_dict",
    "to_torch",
    "torchvision_specs",
]
