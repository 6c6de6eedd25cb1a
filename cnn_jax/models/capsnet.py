"""CapsNet (Sabour, Frosst & Hinton 2017) and the paper's baseline CNN.

``CapsNet`` on 28x28 MNIST: Conv1 256@9x9 (stride 1, valid, ReLU) -> 20x20x256;
PrimaryCaps 32 maps of 8-D capsules, 9x9 stride 2 (valid) -> 6x6x32 = 1152 capsules;
DigitCaps 10 capsules of 16 dimensions, routed by agreement (3 iterations,
``cnn_jax.layers.dynamic_routing``); the outputs are the DigitCaps' lengths. The
reconstruction decoder (512 -> 1024 -> H*W*C, ReLU, ReLU, sigmoid) reads the DigitCaps
with all but the chosen capsules set to zero: the true class when ``label`` is given
(training), the longest capsule(s) otherwise (test). Parameters on 28x28x1:

* Conv1 9*9*1*256 + 256 = 20,992
* PrimaryCaps 9*9*256*256 + 256 = 5,308,672
* DigitCaps W_ij 1152*10*16*8 = 1,474,560 (no bias; the routing logits are not
  parameters)
* decoder 160*512+512 + 512*1024+1024 + 1024*784+784 = 1,411,344

8,215,568 in all (6,804,224 without the decoder): the paper's 8.2M and 6.8M. The loss
is ``cnn_jax.train.losses_capsule`` (margin loss plus 0.0005 x the reconstruction's
sum of squared errors), selected with ``config.loss = 'capsule_margin'``.

``CapsNetBaseline``: the paper's baseline, three 5x5 stride-1 convolutions with 256,
256 and 128 channels (ReLU), then fully connected layers of 328 and 192 units (ReLU),
dropout and a 10-way softmax layer. The paper gives 35.4M parameters; they come out
with 'same' padding and no pooling (28*28*128 = 100,352 inputs to the 328-unit
layer): 6,656 + 1,638,656 + 819,328 + 32,915,784 + 63,168 + 1,930 = 35,445,522. The
dropout rate is not stated; 0.5 here.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.layers.capsules import PrimaryCaps, RoutingCaps, capsule_lengths
from cnn_jax.models._common import (
    Array,
    check_images,
    check_positive_int,
    check_positive_ints,
    check_rate,
)

__all__ = ["CapsNet", "CapsNetBaseline", "CapsuleDecoder", "capsule_mask"]


def capsule_mask(lengths: Array, label: Array | None = None, top: int = 1) -> Array:
    """Which DigitCaps the decoder reads: the label's, or the ``top`` longest.

    Args:
      lengths: ``(N, K)`` capsule lengths.
      label: ``(N,)`` integer classes, ``(N, K)`` multi-hot (or any weights), or None.
      top: with ``label=None``, how many of the longest capsules to keep.

    Returns:
      ``(N, K)`` float mask.

    Raises:
      ValueError: naming ``label`` if its shape matches neither form.
    """
    n, k = lengths.shape
    if label is None:
        idx = jax.lax.top_k(jax.lax.stop_gradient(lengths), min(top, k))[1]
        return jnp.sum(jax.nn.one_hot(idx, k, dtype=lengths.dtype), axis=1)
    label = jnp.asarray(label)
    if label.shape == (n,):
        return jax.nn.one_hot(label, k, dtype=lengths.dtype)
    if label.shape == (n, k):
        return label.astype(lengths.dtype)
    raise ValueError(f"`label` must have shape ({n},) or ({n}, {k}), got {label.shape}")


class CapsNet(nn.Module):
    """The three-layer CapsNet with its reconstruction decoder (see the module docstring).

    Attributes:
      num_classes: DigitCaps (classes).
      conv_features: Conv1's channels.
      primary_maps: PrimaryCaps' capsule maps.
      primary_dim: dimensions of a primary capsule.
      caps_dim: dimensions of a DigitCaps capsule.
      num_iterations: routing iterations.
      route_gradients: see ``cnn_jax.layers.dynamic_routing``.
      decoder: hidden widths of the reconstruction decoder; ``()`` for none.
      reconstruct_top: at test (no ``label``), the decoder reads the this many longest
        capsules (1 for MNIST, 2 for MultiMNIST).
      dtype: computation dtype.
    """

    num_classes: int = 10
    conv_features: int = 256
    primary_maps: int = 32
    primary_dim: int = 8
    caps_dim: int = 16
    num_iterations: int = 3
    route_gradients: bool = False
    decoder: tuple[int, ...] = (512, 1024)
    reconstruct_top: int = 1
    dtype: Any = None

    def __post_init__(self) -> None:
        for name in (
            "num_classes",
            "conv_features",
            "primary_maps",
            "primary_dim",
            "caps_dim",
            "num_iterations",
            "reconstruct_top",
        ):
            check_positive_int(getattr(self, name), name)
        if self.decoder:
            check_positive_ints(self.decoder, "decoder")
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: Array, train: bool = False, label: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images in ``[0, 1]`` (the decoder's sigmoid reconstructs
            them), at least 17 pixels a side.
          train: unused (the model has no dropout or normalization); kept for the
            models' contract.
          label: ``(N,)`` classes or ``(N, num_classes)`` multi-hot: the capsules the
            decoder reads (the training loop passes the batch's labels); None: the
            ``reconstruct_top`` longest.

        Returns:
          ``(lengths, features)``: the DigitCaps' lengths ``(N, num_classes)``, and
          ``conv1``, ``primary_caps`` ``(N, 1152, 8)``, ``digit_caps``
          ``(N, num_classes, caps_dim)``, ``couplings``
          ``(num_iterations, N, 1152, num_classes)``, ``mask`` ``(N, num_classes)`` and
          (with a decoder) ``reconstruction`` of the shape of ``x``.

        Raises:
          ValueError: naming ``x`` or ``label`` for wrong shapes.
        """
        del train
        _, h, w, c = check_images(x, "CapsNet", 17)
        dt = self.dtype
        conv1 = nn.relu(
            nn.Conv(self.conv_features, (9, 9), padding="VALID", dtype=dt, name="conv1")(x)
        )
        u = PrimaryCaps(self.primary_maps, self.primary_dim, dtype=dt, name="primary_caps")(conv1)
        v, couplings = RoutingCaps(
            self.num_classes,
            self.caps_dim,
            self.num_iterations,
            route_gradients=self.route_gradients,
            dtype=dt,
            name="digit_caps",
        )(u, return_couplings=True)
        lengths = capsule_lengths(v.astype(jnp.float32))
        mask = capsule_mask(lengths, label, self.reconstruct_top)
        features = {
            "conv1": conv1,
            "primary_caps": u,
            "digit_caps": v,
            "couplings": couplings,
            "mask": mask,
        }
        if self.decoder:
            decoder = CapsuleDecoder(self.decoder, dtype=dt, name="decoder")
            features["reconstruction"] = decoder(v, mask, (h, w, c))
        return lengths, features


class CapsuleDecoder(nn.Module):
    """CapsNet's reconstruction decoder on masked capsules (ReLU layers, sigmoid output).

    Attributes:
      widths: hidden widths (512, 1024 in the paper).
      dtype: computation dtype.
    """

    widths: tuple[int, ...] = (512, 1024)
    dtype: Any = None

    @nn.compact
    def __call__(self, v: Array, mask: Array, image_shape: tuple[int, ...]) -> Array:
        """``(N, K, D)`` capsules and ``(N, K)`` mask to ``(N, *image_shape)`` in (0, 1).

        Every capsule but the masked ones is set to zero before the first layer.
        """
        n = v.shape[0]
        z = (v * mask[..., None].astype(v.dtype)).reshape(n, -1)
        for i, width in enumerate(self.widths):
            z = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"dense{i}")(z))
        size = int(np.prod(image_shape))
        z = nn.Dense(size, dtype=self.dtype, name=f"dense{len(self.widths)}")(z)
        return nn.sigmoid(z.astype(jnp.float32)).reshape(n, *image_shape)


class CapsNetBaseline(nn.Module):
    """The paper's baseline CNN (see the module docstring): 35,445,522 parameters on MNIST.

    Attributes:
      num_classes: output classes.
      widths: channels of the three 5x5 convolutions.
      hidden: widths of the fully connected layers.
      dropout: dropout rate before the output layer.
      dtype: computation dtype.
    """

    num_classes: int = 10
    widths: tuple[int, ...] = (256, 256, 128)
    hidden: tuple[int, ...] = (328, 192)
    dropout: float = 0.5
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_positive_ints(self.widths, "widths")
        check_positive_ints(self.hidden, "hidden")
        check_rate(self.dropout, "dropout")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images.
          train: dropout in training mode.

        Returns:
          ``(logits, features)`` with each convolution's and hidden layer's output.
        """
        check_images(x, "CapsNetBaseline")
        features: dict[str, Array] = {}
        h = x
        for i, width in enumerate(self.widths):
            h = nn.relu(
                nn.Conv(width, (5, 5), padding="SAME", dtype=self.dtype, name=f"conv{i}")(h)
            )
            features[f"conv{i}"] = h
        h = h.reshape(h.shape[0], -1)
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"fc{i}")(h))
            features[f"fc{i}"] = h
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(h)
        features["logits"] = logits
        return logits, features
