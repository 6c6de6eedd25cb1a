"""LeCun et al. 1989's zip-code network ("Net-5"): shared weights on 16x16 digits.

"Backpropagation Applied to Handwritten Zip Code Recognition" (LeCun, Boser, Denker,
Henderson, Howard, Hubbard & Jackel, Neural Computation 1(4), 1989), section 5:

* input: a 16x16 image (the paper's grey levels scaled to [-1, 1]);
* H1: 12 feature maps of 8x8 units; each unit sees a 5x5 window of the input, the
  windows two pixels apart; the 25 weights are shared by the units of a map, each unit
  has its own bias;
* H2: 12 maps of 4x4 units; each unit sees 5x5 windows (stride 2) of **8 of the 12**
  H1 maps; weights shared within a map, one bias per unit;
* H3: 30 units fully connected to the 192 H2 units; output: 10 units fully connected
  to H3; every unit squashed by the scaled tanh ``1.7159 tanh(2a/3)``.

The paper's counts, which ``count`` below reproduces: 1,256 units (256 inputs, 768,
192, 30, 10), 64,660 connections, 9,760 independent parameters (H1 1,068, H2 2,592,
H3 5,790, output 310).

What the paper leaves open, and the choices made here (those of Karpathy's 2022
reproduction, ``karpathy/lecun1989-repro``): the input is padded by 2 pixels on each
side with the background (here: edge replication, which is the background on digits,
in whatever normalization the data has), so that a 5x5, stride-2 window gives 8x8
maps (the last padded row and column are never read), and H1 is padded by 2 the same
way with the value -1 (the tanh floor); which 8 H1 maps each H2 map sees: H2 maps 0-3
read H1 maps 0-7, maps 4-7 read H1 4-11, maps 8-11 read H1 0-3 and 8-11. Inputs of
another size (28x28 MNIST) are resized to 16x16 with area-weighted (antialiased)
linear interpolation, as the paper's digits were normalized to 16x16. The output
units' pre-activations are returned as logits for the softmax cross-entropy (the paper
squashed them too and minimised the mean squared error to +-1 targets).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import ops
from cnn_jax.models._common import Array, check_images, check_positive_int
from cnn_jax.models.lenet import scaled_tanh

__all__ = ["H2_CONNECTIONS", "ZipCodeNet", "zipcode_counts"]

#: The H1 maps each H2 map reads (8 of 12; see the module docstring).
H2_CONNECTIONS: tuple[tuple[int, ...], ...] = (
    *((tuple(range(0, 8)),) * 4),
    *((tuple(range(4, 12)),) * 4),
    *(((0, 1, 2, 3, 8, 9, 10, 11),) * 4),
)


def zipcode_counts() -> dict[str, int]:
    """The paper's counts from the layer sizes: units, connections, free parameters."""
    h1, h2, h3, out = 12 * 8 * 8, 12 * 4 * 4, 30, 10
    fan_h2 = len(H2_CONNECTIONS[0]) * 25
    return {
        "units": 16 * 16 + h1 + h2 + h3 + out,
        "connections": h1 * (25 + 1) + h2 * (fan_h2 + 1) + h3 * (h2 + 1) + out * (h3 + 1),
        "parameters": (12 * 25 + h1) + (12 * fan_h2 + h2) + h3 * (h2 + 1) + out * (h3 + 1),
    }


def _uniform_fan_in(fan_in: int) -> Any:
    # The paper: uniform in (-2.4 / F, 2.4 / F), F the unit's fan-in.
    bound = 2.4 / fan_in

    def init(key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _h2_mask() -> np.ndarray:
    mask = np.zeros((12, 12), np.float32)  # (input map, output map)
    for o, inputs in enumerate(H2_CONNECTIONS):
        mask[list(inputs), o] = 1.0
    return mask


class ZipCodeNet(nn.Module):
    """The 1989 zip-code network (module docstring).

    Parameters: ``h1_kernel`` (5, 5, C, 12), ``h1_bias`` (8, 8, 12) (one per unit),
    ``h2_kernel`` (5, 5, 8, 12) (the 8 connected maps per output map), ``h2_bias``
    (4, 4, 12), dense ``h3`` and ``output``. With ``C = 1``: 9,760 parameters.
    Initialization: the paper's, uniform in ``+-2.4 / fan_in``.

    Attributes:
      num_classes: outputs (10 in the paper).
      input_size: the side the input is resized to (16 in the paper).
      dtype: computation dtype.
    """

    num_classes: int = 10
    input_size: int = 16
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        if self.input_size != 16:
            raise ValueError(
                f"`input_size` (={self.input_size!r}) must be 16: H1 and H2 are 8x8 and 4x4 "
                "maps of a 16x16 input"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images; resized to 16x16 if they are not.
          train: unused (no dropout, no batch statistics).

        Returns:
          ``(logits, features)`` with ``input`` (16x16), ``h1``, ``h2`` and ``h3``.

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)``.
        """
        del train
        n, h, w, c = check_images(x, "ZipCodeNet")
        x = jnp.asarray(x, self.dtype or jnp.float32)
        if (h, w) != (16, 16):
            x = jax.image.resize(x, (n, 16, 16, c), "linear", antialias=True)
        f: dict[str, Array] = {"input": x}
        k1 = self.param("h1_kernel", _uniform_fan_in(25 * c), (5, 5, c, 12))
        b1 = self.param("h1_bias", nn.initializers.zeros, (8, 8, 12))
        xp = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
        h1 = scaled_tanh(ops.conv(xp, k1.astype(x.dtype), strides=2, padding="VALID") + b1)
        f["h1"] = h1
        fan2 = len(H2_CONNECTIONS[0]) * 25
        k2 = self.param("h2_kernel", _uniform_fan_in(fan2), (5, 5, 8, 12))
        b2 = self.param("h2_bias", nn.initializers.zeros, (4, 4, 12))
        # Scatter the 8 connected input maps of each output map into a dense kernel.
        index = np.array([np.nonzero(_h2_mask()[:, o])[0] for o in range(12)])  # (12, 8)
        dense_k2 = jnp.zeros((5, 5, 12, 12), k2.dtype)
        dense_k2 = dense_k2.at[:, :, index.T, np.arange(12)[None, :]].set(k2)
        hp = jnp.pad(h1, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)
        h2 = scaled_tanh(ops.conv(hp, dense_k2.astype(x.dtype), strides=2, padding="VALID") + b2)
        f["h2"] = h2
        flat = jnp.reshape(h2, (n, -1))
        dense = dict(dtype=self.dtype, bias_init=nn.initializers.zeros)
        h3 = scaled_tanh(nn.Dense(30, kernel_init=_uniform_fan_in(192), name="h3", **dense)(flat))
        f["h3"] = h3
        out = nn.Dense(self.num_classes, kernel_init=_uniform_fan_in(30), name="output", **dense)
        return out(h3), f
