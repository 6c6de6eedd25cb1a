"""The input each model family is published for: one example's shape and dtype.

Used where a model must be traced or initialized without data: ``cnn_jax.nnx``'s
constructors (the zero sample they initialize on) and ``cnn_jax.models.flops`` (the
image the counts are per). Keys are family classes' names (``model_class(name)``);
families not listed take ImageNet's ``(224, 224, 3)`` float32 images.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

__all__ = ["DEFAULT_INPUT_DTYPES", "DEFAULT_INPUT_SHAPES", "IMAGENET_SHAPE", "default_input"]

#: One example's shape: ``(H, W, C)`` for images, ``(T, 1)`` for audio, ``(L,)`` for
#: token ids.
DEFAULT_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "LeNet5": (32, 32, 1),
    "LeNet5Modern": (32, 32, 1),
    "CNNMnist": (28, 28, 1),
    "ResNetCifar": (32, 32, 3),
    "PlainCifar": (32, 32, 3),
    "PreActResNetCifar": (32, 32, 3),
    "HighwayNet": (32, 32, 3),
    "DenseNetBCCifar": (32, 32, 3),
    "AllConvNet": (32, 32, 3),
    "NetworkInNetwork": (32, 32, 3),
    "CapsNet": (28, 28, 1),
    "CapsNetBaseline": (28, 28, 1),
    "WCTAutoencoder": (32, 32, 3),
    "UNet": (572, 572, 1),
    "SegNet": (360, 480, 3),
    "ConvAutoencoder": (28, 28, 1),
    "TDNN": (8000, 1),
    "SpectrogramCNN": (8000, 1),
    "TextCNN": (56,),
    "DilatedTextCNN": (56,),
    "MLP": (28, 28, 1),
    "ZipCodeNet": (16, 16, 1),
    "KerasMnistCNN": (28, 28, 1),
    "KerasCifarCNN": (32, 32, 3),
    "AlexNetCifar": (32, 32, 3),
    "PlainInit": (32, 32, 3),
    "InceptionCifar": (32, 32, 3),
    "InceptionV3": (299, 299, 3),
    "WaveNet": (2048, 1),
    "WaveNetScorer": (2048, 1),
    "Xception": (299, 299, 3),
}
#: Families whose input is not float32 (token ids).
DEFAULT_INPUT_DTYPES: dict[str, Any] = {"TextCNN": jnp.int32, "DilatedTextCNN": jnp.int32}
IMAGENET_SHAPE = (224, 224, 3)


def default_input(family: str) -> tuple[tuple[int, ...], Any]:
    """``(shape, dtype)`` of one example of the family named ``family``."""
    return (
        DEFAULT_INPUT_SHAPES.get(family, IMAGENET_SHAPE),
        jnp.dtype(DEFAULT_INPUT_DTYPES.get(family, jnp.float32)),
    )
