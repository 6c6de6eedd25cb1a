"""A fully connected network for MNIST: Keras' ``mnist_mlp`` example, the lecture's MLP.

Keras' example (``examples/mnist_mlp.py`` of Keras 2): the 28x28 image flattened to
784 values, ``Dense(512, relu)``, ``Dropout(0.2)``, ``Dense(512, relu)``,
``Dropout(0.2)``, ``Dense(10, softmax)``: 669,706 parameters
(``784*512 + 512 + 512*512 + 512 + 512*10 + 10``); the example reports 98.40% test
accuracy after 20 epochs of RMSprop, the "about 2% error" of a fully connected net
on MNIST. Widths, depth, activation and dropout are attributes. Initialization is
Keras': Glorot-uniform kernels, zero biases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.layers.activations import get_activation
from cnn_jax.models._common import Array, check_positive_int, check_positive_ints, check_rate

__all__ = ["MLP"]


class MLP(nn.Module):
    """A multilayer perceptron on flattened images (see the module docstring).

    Attributes:
      num_classes: outputs.
      hidden: units of each hidden layer.
      activation: a ``cnn_jax.layers.activations`` name.
      dropout: dropout rate after each hidden layer.
      dtype: computation dtype.
    """

    num_classes: int = 10
    hidden: Sequence[int] = (512, 512)
    activation: str = "relu"
    dropout: float = 0.2
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_positive_ints(self.hidden, "hidden")
        check_rate(self.dropout, "dropout")
        get_activation(self.activation)  # a ValueError naming an unknown activation
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, ...)`` inputs, flattened per example (e.g. ``(N, 28, 28, 1)``).
          train: dropout in training mode.

        Returns:
          ``(logits, features)`` with ``hidden0``, ``hidden1``, ... (after activation).

        Raises:
          ValueError: for an input without a batch axis and features.
        """
        if getattr(x, "ndim", 0) < 2:
            raise ValueError(f"MLP expects `x` of shape (N, ...), got {getattr(x, 'shape', x)!r}")
        h = jnp.reshape(x, (x.shape[0], -1))
        features: dict[str, Array] = {}
        dense = nn.Dense
        for i, width in enumerate(tuple(self.hidden)):
            h = dense(
                width,
                dtype=self.dtype,
                kernel_init=nn.initializers.glorot_uniform(),
                name=f"dense{i}",
            )(h)
            h = get_activation(self.activation)(h)
            features[f"hidden{i}"] = h
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = dense(
            self.num_classes,
            dtype=self.dtype,
            kernel_init=nn.initializers.glorot_uniform(),
            name="output",
        )(h)
        return logits, features
