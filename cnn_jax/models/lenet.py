"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998) as published, and a modern variant.

``LeNet5`` follows the paper: a 32x32 input; C1, six 5x5 feature maps; S2, trainable
subsampling (the sum of each 2x2 block times a learned coefficient plus a learned
bias, per map); C3, sixteen 5x5 maps connected to the S2 maps by Table I of the paper;
S4 like S2; C5, 120 5x5 maps (fully connected to S4); F6, 84 units; every unit
squashed by ``f(a) = 1.7159 tanh(2a/3)``; and an output of Euclidean radial basis
function units, ``y_i = sum_j (x_j - w_ij)^2``, whose centres are fixed +-1 codes.
The 60,000 trainable parameters are those of C1..F6
(156 + 12 + 1,516 + 32 + 48,120 + 10,164). Departures from the paper, each documented
here: the RBF centres are pseudo-random +-1 codes (the paper drew 7x12 bitmaps of
stylised characters, which were not published), and training minimises the softmax
cross-entropy of the logits ``-y_i`` (the paper's MAP criterion without its
rejection class) with a first-order optimiser instead of the stochastic diagonal
Levenberg-Marquardt method.

``LeNet5Modern``: ReLU, max pooling, a full C3 and a linear softmax output.
Both return ``(logits, features)`` with the intermediate activations by name.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cnn_jax import ops
from cnn_jax.layers import Conv
from cnn_jax.layers.initializers import get_initializer
from cnn_jax.models._common import Array, check_images, check_positive_int

__all__ = ["C3_TABLE", "LeNet5", "LeNet5Modern", "Subsampling", "rbf_centres", "scaled_tanh"]

#: Table I of the paper: the S2 maps each C3 map is connected to.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (4, 5, 0),
    (5, 0, 1),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (3, 4, 5, 0),
    (4, 5, 0, 1),
    (5, 0, 1, 2),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def scaled_tanh(x: Array) -> Array:
    """The paper's squashing function ``1.7159 tanh(2x/3)`` (appendix A), ``f(+-1) = +-1``."""
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


def rbf_centres(num_classes: int, dim: int = 84, seed: int = 1998) -> np.ndarray:
    """Fixed +-1 codes for the RBF output units, one row per class.

    Args:
      num_classes: number of output units.
      dim: code length (the F6 width, 84 = 7x12 in the paper).
      seed: the seed of the (deterministic) codes.

    Returns:
      A ``(num_classes, dim)`` float32 array of +-1.
    """
    codes = np.random.default_rng(seed).integers(0, 2, size=(num_classes, dim))
    return (2.0 * codes - 1.0).astype(np.float32)


class Subsampling(nn.Module):
    """LeNet's trainable subsampling: ``coef * sum(2x2 block) + bias`` per feature map.

    Attributes:
      window: the block size.
      dtype: computation dtype.
    """

    window: int = 2
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Subsamples ``x`` ``(N, H, W, C)`` by ``window`` in each spatial dimension.

        Args:
          x: input feature maps.

        Returns:
          ``(N, H / window, W / window, C)``.
        """
        c = x.shape[-1]
        coef = self.param("coef", nn.initializers.constant(1.0 / self.window**2), (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        x, coef, bias = nn.dtypes.promote_dtype(x, coef, bias, dtype=self.dtype)
        summed = ops.avg_pool(x, self.window) * float(self.window**2)
        return summed * coef + bias


class _PartialConv(nn.Module):
    """C3: a 5x5 convolution that connects each output map to a subset of input maps.

    Only the connected weights are parameters (``kernel`` ``(5, 5, 60)`` for Table I);
    they are scattered into a dense ``(5, 5, 6, 16)`` kernel for the convolution.
    """

    table: tuple[tuple[int, ...], ...]
    kernel_size: int = 5
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        ins = np.array([i for row in self.table for i in row])
        outs = np.array([o for o, row in enumerate(self.table) for _ in row])
        k = self.kernel_size
        fan_in = np.array([len(self.table[o]) * k * k for o in outs], np.float32)

        def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
            u = nn.initializers.uniform(2.0)(key, shape, dtype) - 1.0  # U(-1, 1)
            return u * (2.4 / fan_in).astype(dtype)

        w = self.param("kernel", init, (k, k, len(ins)))
        b = self.param("bias", nn.initializers.zeros, (len(self.table),))
        x, w, b = nn.dtypes.promote_dtype(x, w, b, dtype=self.dtype)
        kernel = jnp.zeros((k, k, x.shape[-1], len(self.table)), w.dtype)
        kernel = kernel.at[:, :, ins, outs].set(w)
        return ops.conv(x, kernel, b, padding="VALID")


class LeNet5(nn.Module):
    """LeNet-5 as published (see the module docstring).

    Attributes:
      num_classes: output units.
      rbf_output: the paper's Euclidean RBF output; ``False`` gives a linear layer.
      dtype: computation dtype.
    """

    num_classes: int = 10
    rbf_output: bool = True
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 32, 32, 1)`` images (MNIST padded to 32x32, as in the paper).
          train: unused (no dropout or batch norm); kept for the common model API.

        Returns:
          ``(logits, features)``: logits ``(N, num_classes)`` (``-y_i`` for the RBF
          output) and the activations of every layer by name.

        Raises:
          ValueError: for inputs that are not ``(N, 32, 32, C)``.
        """
        del train
        shape = check_images(x, "LeNet5")
        if shape[1:3] != (32, 32):
            raise ValueError(f"LeNet5 expects `x` of shape (N, 32, 32, C), got shape {shape}")
        init = "lecun1998_uniform"
        conv = dict(padding="VALID", kernel_init=init, dtype=self.dtype)
        f: dict[str, Array] = {}
        f["c1"] = h = scaled_tanh(Conv(6, 5, **conv, name="C1")(x))
        f["s2"] = h = scaled_tanh(Subsampling(dtype=self.dtype, name="S2")(h))
        f["c3"] = h = scaled_tanh(_PartialConv(C3_TABLE, dtype=self.dtype, name="C3")(h))
        f["s4"] = h = scaled_tanh(Subsampling(dtype=self.dtype, name="S4")(h))
        f["c5"] = h = scaled_tanh(Conv(120, 5, **conv, name="C5")(h))
        h = h.reshape(h.shape[0], -1)
        f["f6"] = h = scaled_tanh(
            nn.Dense(84, kernel_init=get_initializer(init), dtype=self.dtype, name="F6")(h)
        )
        if self.rbf_output:
            centres = jnp.asarray(rbf_centres(self.num_classes, h.shape[-1]), h.dtype)
            dist = jnp.sum((h[:, None, :] - centres[None]) ** 2, axis=-1)
            logits = -dist
        else:
            logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(h)
        f["logits"] = logits
        return logits, f


class LeNet5Modern(nn.Module):
    """LeNet-5 with today's choices: ReLU, 2x2 max pooling, full C3, linear softmax output.

    Attributes:
      num_classes: output classes.
      dtype: computation dtype.
    """

    num_classes: int = 10
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images, 32x32 (at least 16x16; the size sets C5's inputs).
          train: unused; kept for the common model API.

        Returns:
          ``(logits, features)``.

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)`` of at least 16x16.
        """
        del train
        check_images(x, "LeNet5Modern", 16)
        conv = dict(padding="VALID", kernel_init="he_normal", dtype=self.dtype)
        f: dict[str, Array] = {}
        f["c1"] = h = nn.relu(Conv(6, 5, **conv, name="C1")(x))
        f["s2"] = h = ops.max_pool(h, 2)
        f["c3"] = h = nn.relu(Conv(16, 5, **conv, name="C3")(h))
        f["s4"] = h = ops.max_pool(h, 2)
        h = h.reshape(h.shape[0], -1)
        f["c5"] = h = nn.relu(nn.Dense(120, dtype=self.dtype, name="C5")(h))
        f["f6"] = h = nn.relu(nn.Dense(84, dtype=self.dtype, name="F6")(h))
        f["logits"] = logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(h)
        return logits, f
