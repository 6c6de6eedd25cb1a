"""The four-layer CIFAR-10 CNN of AlexNet's ReLU-versus-tanh figure.

Krizhevsky, Sutskever & Hinton (NIPS 2012), figure 1: "A four-layer convolutional
neural network with ReLUs reaches a 25% training error rate on CIFAR-10 six times
faster than an equivalent network with tanh neurons". The paper does not list the
layers; the network here is cuda-convnet's ``layers-80sec.cfg`` (Krizhevsky's own
four-weight-layer CIFAR-10 example), which is our reading, not the paper's statement:
a 5x5 convolution to 32 channels, 3x3/2 max pooling, 5x5 to 32, 3x3/2 average pooling,
5x5 to 64, 3x3/2 average pooling, a linear layer to 10 ('SAME' convolutions; the
pools give 32 -> 16 -> 8 -> 4, see below). Without local response normalization (the figure's
run used none of the regularizers): 89,578 parameters
(2,432 + 25,632 + 51,264 + 10,250).

Options for the studies:

* ``activation``: any ``cnn_jax.layers.activations`` name: ``relu``, ``tanh``,
  ``sigmoid``, ``leaky_relu``, ``elu``, ``prelu`` (a learned slope per channel),
  ``maxout`` (each convolution then outputs ``maxout_pieces`` times its channels, and
  the maximum over each group is taken: a maxout net of the same width);
* ``first_layer``: ``'learned'`` (the paper) or a fixed, non-trainable bank,
  ``'sobel'`` (8 channels) or ``'gabor'`` (32 channels) (``FixedConv``).

Initialization: He-normal kernels by default (``kernel_init``, any
``cnn_jax.layers.initializers`` name) and zero biases; cuda-convnet's file draws from
normals of standard deviation 1e-4 (conv1) and 1e-2, tuned with its own learning rates.
Pooling pads one row and column at the bottom and right (zeros counted in averages, as
PyTorch's ``count_include_pad``), so that 3x3/2 windows give 16, 8 and 4.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import Conv
from cnn_jax.layers.activations import get_activation
from cnn_jax.models._common import Array, check_choice, check_images, check_positive_int
from cnn_jax.models.fixed_filters import FixedConv

__all__ = ["ACTIVATIONS", "AlexNetCifar"]

#: The activations of the study (any ``get_activation`` name is accepted).
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "prelu", "maxout")


class AlexNetCifar(nn.Module):
    """The four-layer CIFAR-10 network of AlexNet's figure 1 (module docstring).

    Attributes:
      num_classes: outputs.
      widths: the three convolutions' channels.
      activation: the nonlinearity's name.
      maxout_pieces: pieces per unit when ``activation='maxout'``.
      first_layer: ``'learned'``, ``'sobel'`` or ``'gabor'``.
      kernel_init: the kernels' initializer name.
      dtype: computation dtype.
    """

    num_classes: int = 10
    widths: tuple[int, int, int] = (32, 32, 64)
    activation: str = "relu"
    maxout_pieces: int = 2
    first_layer: str = "learned"
    kernel_init: str = "he_normal"
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_positive_int(self.maxout_pieces, "maxout_pieces")
        if len(tuple(self.widths)) != 3:
            raise ValueError(f"`widths` (={self.widths!r}) must be three channel counts")
        for w in self.widths:
            check_positive_int(w, "widths")
        check_choice(self.first_layer, "first_layer", ("learned", "sobel", "gabor"))
        if self.activation != "maxout":
            get_activation(self.activation)  # a ValueError naming an unknown one
        super().__post_init__()

    def _act(self, h: Array, i: int) -> Array:
        if self.activation == "maxout":
            return ops.maxout(h, self.maxout_pieces)
        if self.activation == "prelu":
            return get_activation("prelu", name=f"prelu{i}")(h)
        return get_activation(self.activation)(h)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 32, 32, C)`` images (the linear layer fixes the size at init).
          train: unused (no dropout or batch statistics).

        Returns:
          ``(logits, features)`` with ``conv1`` .. ``conv3`` (after their activation).

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)`` of at least 8x8.
        """
        del train
        check_images(x, "AlexNetCifar", 8)
        pieces = self.maxout_pieces if self.activation == "maxout" else 1
        f: dict[str, Array] = {}
        h = jnp.asarray(x, self.dtype or jnp.float32)
        for i, width in enumerate(tuple(self.widths), 1):
            if i == 1 and self.first_layer != "learned":
                h = FixedConv(self.first_layer, 5, width * pieces, dtype=self.dtype, name="conv1")(
                    h
                )
                if self.activation == "maxout" and h.shape[-1] % pieces:
                    h = h[..., : h.shape[-1] - h.shape[-1] % pieces]
            else:
                h = Conv(
                    width * pieces,
                    5,
                    padding="SAME",
                    kernel_init=self.kernel_init,
                    dtype=self.dtype,
                    name=f"conv{i}",
                )(h)
            h = self._act(h, i)
            f[f"conv{i}"] = h
            pool = ops.max_pool if i == 1 else ops.avg_pool
            h = pool(h, 3, 2, padding=((0, 1), (0, 1)), ceil_mode=False)
        h = jnp.reshape(h, (h.shape[0], -1))
        logits = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            kernel_init=nn.initializers.lecun_normal(),
            name="fc",
        )(h)
        return logits, f
