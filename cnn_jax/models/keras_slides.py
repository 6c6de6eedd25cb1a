"""The Keras example CNNs the lecture slides show, layer for layer.

* ``KerasMnistCNN``: Keras' ``examples/mnist_cnn.py``: ``Conv2D(32, 3, relu)``,
  ``Conv2D(64, 3, relu)`` (both 'valid'), ``MaxPooling2D(2)``, ``Dropout(0.25)``,
  ``Flatten``, ``Dense(128, relu)``, ``Dropout(0.5)``, ``Dense(10, softmax)`` on 28x28x1:
  1,199,882 parameters (320 + 18,496 + 1,179,776 + 1,290). The example reports
  99.25% test accuracy after 12 epochs of Adadelta.
* ``KerasCifarCNN``: Keras' ``examples/cifar10_cnn.py``: ``Conv2D(32, 3, 'same')``,
  ``Conv2D(32, 3)``, max pool, ``Dropout(0.25)``, ``Conv2D(64, 3, 'same')``,
  ``Conv2D(64, 3)``, max pool, ``Dropout(0.25)``, ``Dense(512)``, ``Dropout(0.5)``,
  ``Dense(10)``, ReLU throughout, on 32x32x3: 1,250,858 parameters.

Initialization is Keras': Glorot-uniform kernels, zero biases. The flatten is
channels-last, as Keras' default ``data_format``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import Conv
from cnn_jax.models._common import Array, check_images, check_positive_int, check_rate

__all__ = ["KerasCifarCNN", "KerasMnistCNN"]

_GLOROT = nn.initializers.glorot_uniform()


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, kernel_init=_GLOROT, name=name)


class KerasMnistCNN(nn.Module):
    """Keras' ``mnist_cnn`` example (module docstring).

    Attributes:
      num_classes: outputs.
      dropout_conv: dropout after the pooling.
      dropout_dense: dropout after the hidden dense layer.
      dtype: computation dtype.
    """

    num_classes: int = 10
    dropout_conv: float = 0.25
    dropout_dense: float = 0.5
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_rate(self.dropout_conv, "dropout_conv")
        check_rate(self.dropout_dense, "dropout_dense")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 28, 28, C)`` images (the dense layer fixes the size at init).
          train: dropout in training mode.

        Returns:
          ``(logits, features)`` with ``conv1``, ``conv2``, ``pool`` and ``hidden``.

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)`` of at least 6x6.
        """
        check_images(x, "KerasMnistCNN", 6)
        f: dict[str, Array] = {}
        conv = dict(padding="VALID", kernel_init=_GLOROT, dtype=self.dtype)
        h = nn.relu(Conv(32, 3, name="conv1", **conv)(x))
        f["conv1"] = h
        h = nn.relu(Conv(64, 3, name="conv2", **conv)(h))
        f["conv2"] = h
        h = ops.max_pool(h, 2)
        f["pool"] = h
        h = nn.Dropout(self.dropout_conv, deterministic=not train)(h)
        h = jnp.reshape(h, (h.shape[0], -1))
        h = nn.relu(_dense(128, self.dtype, "dense1")(h))
        f["hidden"] = h
        h = nn.Dropout(self.dropout_dense, deterministic=not train)(h)
        return _dense(self.num_classes, self.dtype, "dense2")(h), f


class KerasCifarCNN(nn.Module):
    """Keras' ``cifar10_cnn`` example (module docstring).

    Attributes:
      num_classes: outputs.
      dropout_conv: dropout after each pooling.
      dropout_dense: dropout after the hidden dense layer.
      dtype: computation dtype.
    """

    num_classes: int = 10
    dropout_conv: float = 0.25
    dropout_dense: float = 0.5
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_rate(self.dropout_conv, "dropout_conv")
        check_rate(self.dropout_dense, "dropout_dense")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 32, 32, C)`` images (the dense layer fixes the size at init).
          train: dropout in training mode.

        Returns:
          ``(logits, features)`` with ``block1``, ``block2`` and ``hidden``.

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)`` of at least 10x10.
        """
        check_images(x, "KerasCifarCNN", 10)
        f: dict[str, Array] = {}
        h = x
        for b, width in enumerate((32, 64), 1):
            for j, pad in enumerate(("SAME", "VALID")):
                h = Conv(
                    width,
                    3,
                    padding=pad,
                    kernel_init=_GLOROT,
                    dtype=self.dtype,
                    name=f"conv{b}_{j}",
                )(h)
                h = nn.relu(h)
            h = ops.max_pool(h, 2)
            f[f"block{b}"] = h
            h = nn.Dropout(self.dropout_conv, deterministic=not train)(h)
        h = jnp.reshape(h, (h.shape[0], -1))
        h = nn.relu(_dense(512, self.dtype, "dense1")(h))
        f["hidden"] = h
        h = nn.Dropout(self.dropout_dense, deterministic=not train)(h)
        return _dense(self.num_classes, self.dtype, "dense2")(h), f
