"""The model zoo of the training-step benchmarks: small CNNs in cnn_jax, flax.linen, PyTorch.

Models (float32), each with the input ``specs`` gives it:

* ``lenet5``: ``cnn_jax.models.lenet.LeNet5Modern`` (ReLU, 2x2 max pooling), 32x32x1,
  batch 256;
* ``airbench94``: the network of Keller Jordan's ``airbench94.py`` (2x2 whitening
  conv with 24 filters and GELU, then three groups of conv3x3 -> maxpool2 -> BN ->
  GELU -> conv3x3 -> BN -> GELU of widths 64/256/256, maxpool3, linear 10 without
  bias, logits / 9), 32x32x3, batch 256; every parameter trained;
* ``resnet20``: ResNet-20 for CIFAR (He et al. 2015, option-A shortcuts;
  ``cnn_jax.models.resnet.ResNet20``), 32x32x3, batch 128;
* ``xception_block``: an Xception middle-flow block (Chollet 2017): three times
  ReLU -> separable conv 3x3 728->728 -> BN, plus the identity; then global average
  pooling and a linear layer; 728 channels at 10x10 by default, batch 64;
* ``unet_decoder``: a U-Net-like decoder (Ronneberger et al. 2015): from 8x8x256,
  three times [transposed conv 2x2/2 halving the channels -> conv3x3 -> BN -> ReLU],
  then a 1x1 conv to 10 classes; per-pixel cross-entropy on 64x64; batch 32.

``jax_models()`` gives ``name -> (ours, flax)`` flax modules (``flax_nets``),
``torch_models()`` ``name -> constructor`` of the PyTorch modules (``torch_nets``,
imported only when called), ``benchmarks.zoo.steps`` their compiled training steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MODELS = ("lenet5", "airbench94", "resnet20", "xception_block", "unet_decoder")


@dataclass(frozen=True)
class Spec:
    """A model's input: ``(batch, *spatial, channels)`` and whether labels are per pixel."""

    name: str
    batch: int
    spatial: tuple[int, int]
    channels: int
    dense_labels: bool = False

    def describe(self) -> str:
        """The input, for the table."""
        kind = "per-pixel labels" if self.dense_labels else "labels"
        return f"{self.spatial[0]}x{self.spatial[1]}x{self.channels}, batch {self.batch}, {kind}"


def specs(quick: bool = False, xception_size: int = 10) -> dict[str, Spec]:
    """The inputs of every model (``quick``: batches / 4).

    Args:
      quick: smaller batches (smoke tests).
      xception_size: height and width of the Xception block's 728-channel input.
    """
    q = 4 if quick else 1
    return {
        "lenet5": Spec("lenet5", 256 // q, (32, 32), 1),
        "airbench94": Spec("airbench94", 256 // q, (32, 32), 3),
        "resnet20": Spec("resnet20", 128 // q, (32, 32), 3),
        "xception_block": Spec("xception_block", 64 // q, (xception_size,) * 2, 728),
        "unet_decoder": Spec("unet_decoder", 32 // q, (8, 8), 256, dense_labels=True),
    }


def batch_for(spec: Spec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random batch: images NHWC float32 and int32 labels (per pixel for the decoder)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec.batch, *spec.spatial, spec.channels)).astype(np.float32)
    label_shape = (
        (spec.batch, *(s * 8 for s in spec.spatial)) if spec.dense_labels else (spec.batch,)
    )
    y = rng.integers(0, 10, label_shape).astype(np.int32)
    return x, y


def jax_models() -> dict[str, tuple[Any, Any]]:
    """``name -> (ours, flax)`` flax modules, ``__call__(x, train) -> logits``."""
    from benchmarks.zoo import flax_nets

    return flax_nets.modules()


def torch_models() -> dict[str, Callable[[], Any]]:
    """``name -> constructor`` of the PyTorch modules (NCHW); needs PyTorch."""
    from benchmarks.zoo import torch_nets

    return torch_nets.constructors()
