"""A convolutional autoencoder: strided-conv encoder, transposed-conv ("convolutional") decoder.

Encoder: one ``k x k`` convolution of stride 2 + ReLU per entry of ``features`` (each
halves the size), then a 1x1 convolution to ``latent`` channels (the code). Decoder: the
mirror image, ``k x k`` transposed convolutions of stride 2 + ReLU (each doubles the
size, ``cnn_jax.ops.conv_transpose`` with 'SAME' padding) back to the input's channels,
with a sigmoid at the end, so the output is a reconstruction in ``[0, 1]`` of the same
shape as the input; the height and width must be divisible by ``2 ** len(features)``.
Trained with ``config.loss = 'reconstruction_mse'`` (``cnn_jax.train.losses_dense``),
the labels unused. ``num_classes`` is accepted (and ignored) so that the training loop
can build it like the classifiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn

from cnn_jax.layers import Conv, ConvTranspose
from cnn_jax.models._common import Array, check_images, check_positive_int, check_positive_ints

__all__ = ["ConvAutoencoder"]


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder (see the module docstring).

    Attributes:
      features: encoder widths, one stride-2 convolution each.
      latent: channels of the code.
      kernel_size: the window of every (transposed) convolution.
      num_classes: unused (the loop passes the data set's); None or a positive int.
      dtype: computation dtype.
    """

    features: Sequence[int] = (32, 64)
    latent: int = 16
    kernel_size: int = 3
    num_classes: int | None = None
    dtype: Any = None

    def __post_init__(self) -> None:
        if self.num_classes is not None:  # unused, but checked like every model's
            check_positive_int(self.num_classes, "num_classes")
        check_positive_ints(self.features, "features")
        check_positive_int(self.latent, "latent")
        check_positive_int(self.kernel_size, "kernel_size")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Encodes and decodes ``x``.

        Args:
          x: ``(N, H, W, C)`` images in ``[0, 1]``, ``H, W`` divisible by
            ``2 ** len(features)``.
          train: unused; kept for the common model API.

        Returns:
          ``(reconstruction, features)``: the reconstruction has the shape of ``x``;
          features ``code`` (the latent maps) and ``encoder{i}`` / ``decoder{i}``.

        Raises:
          ValueError: for a wrong rank or a size not divisible by ``2 ** len(features)``.
        """
        del train
        shape = check_images(x, "ConvAutoencoder")
        stride = 2 ** len(self.features)
        for name, size in (("height", shape[1]), ("width", shape[2])):
            if size % stride:
                lo = size // stride * stride
                raise ValueError(
                    f"ConvAutoencoder with {len(self.features)} stride-2 layers needs `x` "
                    f"{name} divisible by {stride}, got {size} (shape {shape}); nearest valid: "
                    f"{[s for s in (lo, lo + stride) if s > 0]}"
                )
        f: dict[str, Array] = {}
        k = self.kernel_size
        for i, width in enumerate(self.features):
            x = nn.relu(Conv(width, k, strides=2, dtype=self.dtype, name=f"enc{i + 1}")(x))
            f[f"encoder{i + 1}"] = x
        f["code"] = x = Conv(self.latent, 1, dtype=self.dtype, name="code")(x)
        outs = [*reversed(self.features[:-1]), shape[3]]
        for i, width in enumerate(outs):
            x = ConvTranspose(
                width, k, strides=2, padding="SAME", dtype=self.dtype, name=f"dec{i + 1}"
            )(x)
            last = i == len(outs) - 1
            x = nn.sigmoid(x) if last else nn.relu(x)
            f[f"decoder{i + 1}"] = x
        return x, f
