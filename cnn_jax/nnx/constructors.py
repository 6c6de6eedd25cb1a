"""Named NNX constructors: one per linen layer of ``cnn_jax.layers``, one per model.

``cnn_jax.nnx.X(*args, rngs=..., **kwargs)`` builds ``cnn_jax.layers.X`` /
``cnn_jax.models.X`` with the same arguments and wraps it in a :class:`Bridged`
initialized under ``jax.jit`` on a zero batch of one (no input array is allocated; the
forward pass, whose result is unused, is dropped by the compiler):

* models take an optional ``input_shape`` (one example, no batch axis), by default the
  size the architecture was published for (``cnn_jax.models.input_shapes``); only models that
  flatten a feature map into a dense layer (LeNet-5, ``CNNMnist``) depend on it, the
  others pool globally or adaptively;
* layers need ``input_shape`` (e.g. ``(32, 32, 3)``): the channels fix the kernel's
  shape, as ``in_features`` does for ``nnx.Conv``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax import layers, models
from cnn_jax.models.input_shapes import DEFAULT_INPUT_SHAPES, default_input
from cnn_jax.nnx.wrapper import Bridged, RngsLike


def _family(factory: Any) -> type:
    while isinstance(factory, functools.partial):
        factory = factory.func
    return factory


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    if (
        not isinstance(input_shape, Sequence)
        or isinstance(input_shape, str)
        or not input_shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    ):
        raise ValueError(
            f"`input_shape` (={input_shape!r}) must be a non-empty sequence of positive ints "
            "(one example's shape, without the batch axis)"
        )
    return tuple(input_shape)


def _sample(input_shape: Any, input_dtype: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((1, *_check_input_shape(input_shape)), jnp.dtype(input_dtype))


def _model(name: str) -> Callable[..., Bridged]:
    factory = getattr(models, name)
    default_shape, default_dtype = default_input(_family(factory).__name__)

    def make(
        *args: Any,
        rngs: RngsLike,
        input_shape: Sequence[int] = default_shape,
        input_dtype: Any = default_dtype,
        **kwargs: Any,
    ) -> Bridged:
        return Bridged(factory(*args, **kwargs), _sample(input_shape, input_dtype), rngs=rngs)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = (
        f"``cnn_jax.models.{name}(*args, **kwargs)`` as an initialized NNX module.\n\n"
        f"Keyword-only: ``rngs``; ``input_shape`` (default {default_shape}) and\n"
        f"``input_dtype`` ({default_dtype}) of the zero sample.\n"
        "Calls return ``(logits, features)``."
    )
    return make


def _layer(name: str) -> Callable[..., Bridged]:
    cls = getattr(layers, name)

    def make(
        *args: Any,
        rngs: RngsLike,
        input_shape: Sequence[int] | None = None,
        input_dtype: Any = jnp.float32,
        **kwargs: Any,
    ) -> Bridged:
        if input_shape is None:
            raise TypeError(
                f"{name}() needs `input_shape`, one example's shape without the batch "
                "axis, e.g. input_shape=(32, 32, 3)"
            )
        return Bridged(cls(*args, **kwargs), _sample(input_shape, input_dtype), rngs=rngs)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = (
        f"``cnn_jax.layers.{name}(*args, **kwargs)`` as an initialized NNX module.\n\n"
        "Keyword-only: ``rngs``, ``input_shape`` (one example, e.g. ``(32, 32, 3)``) and\n"
        "``input_dtype`` (float32) of the zero sample."
    )
    return make


def get_model(
    name: str,
    *,
    rngs: RngsLike,
    input_shape: Sequence[int] | None = None,
    input_dtype: Any = None,
    **kwargs: Any,
) -> Bridged:
    """``cnn_jax.models.get_model(name, **kwargs)`` as an initialized NNX module.

    Args:
      name: a key of ``cnn_jax.models.MODELS`` (``"resnet20"``, ``"vgg16_bn"``, ...).
      rngs: ``nnx.Rngs``, an int seed or a PRNG key.
      input_shape: one example's shape; default: the family's
        (``cnn_jax.models.input_shapes``).
      input_dtype: dtype of the zero sample; default: the family's (float32, token
        ids int32).
      **kwargs: the model's attributes.

    Returns:
      The ``Bridged`` model.

    Raises:
      ValueError: for an unknown name or a bad ``input_shape``.
      TypeError: for attributes the model does not have.
    """
    module = models.get_model(name, **kwargs)
    shape, dtype = default_input(models.model_class(name).__name__)
    input_shape = shape if input_shape is None else input_shape
    input_dtype = dtype if input_dtype is None else input_dtype
    return Bridged(module, _sample(input_shape, input_dtype), rngs=rngs)


#: The linen layers of ``cnn_jax.layers`` with an NNX constructor here.
LAYER_NAMES: tuple[str, ...] = (
    "BatchNorm",
    "Conv",
    "ConvTranspose",
    "DepthwiseConv",
    "DepthwiseSeparableConv",
    "GatedActivation",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "LocalResponseNorm",
    "LocallyConnected",
    "Maxout",
    "PReLU",
    "TiledConv",
    "PrimaryCaps",
    "RoutingCaps",
)

#: The models of ``cnn_jax.models`` with an NNX constructor here.
MODEL_NAMES: tuple[str, ...] = (
    "AlexNet",
    "AlexNetPaper",
    "ZFNet",
    "CNNMnist",
    "LeNet5",
    "LeNet5Modern",
    "DenseNet",
    "DenseNet121",
    "DenseNet161",
    "DenseNet169",
    "DenseNet201",
    "GoogLeNet",
    "InceptionV3",
    "Xception",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "ResNet101",
    "ResNet152",
    "ResNetV2",
    "ResNet50V2",
    "ResNet101V2",
    "ResNet152V2",
    "ResNetCifar",
    "ResNet20",
    "ResNet32",
    "ResNet44",
    "ResNet56",
    "ResNet110",
    "VGG",
    "VGG11",
    "VGG11BN",
    "VGG13",
    "VGG13BN",
    "VGG16",
    "VGG16BN",
    "VGG19",
    "VGG19BN",
    "AllConvNet",
    "DenseNetBC100",
    "DenseNetBC250",
    "HighwayNet",
    "NetworkInNetwork",
    "Plain20",
    "Plain32",
    "Plain44",
    "Plain56",
    "Plain110",
    "PreActResNet164",
    "PreActResNet1001",
    "ResNet1202",
    "CapsNet",
    "CapsNetBaseline",
    "WCTAutoencoder",
    "WaveNet",
    "WaveNetScorer",
    "UNet",
    "SegNet",
    "FCN",
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "DilatedNet",
    "ConvAutoencoder",
    "TDNN",
    "SpectrogramCNN",
    "TextCNN",
    "DilatedTextCNN",
    "MLP",
    "ZipCodeNet",
    "KerasMnistCNN",
    "KerasCifarCNN",
    "AlexNetCifar",
    "PlainInit",
    "InceptionCifar",
)

BatchNorm = _layer("BatchNorm")
Conv = _layer("Conv")
ConvTranspose = _layer("ConvTranspose")
DepthwiseConv = _layer("DepthwiseConv")
DepthwiseSeparableConv = _layer("DepthwiseSeparableConv")
GatedActivation = _layer("GatedActivation")
GroupNorm = _layer("GroupNorm")
InstanceNorm = _layer("InstanceNorm")
LayerNorm = _layer("LayerNorm")
LocalResponseNorm = _layer("LocalResponseNorm")
LocallyConnected = _layer("LocallyConnected")
Maxout = _layer("Maxout")
PReLU = _layer("PReLU")
TiledConv = _layer("TiledConv")
PrimaryCaps = _layer("PrimaryCaps")
RoutingCaps = _layer("RoutingCaps")

AlexNet = _model("AlexNet")
AlexNetPaper = _model("AlexNetPaper")
ZFNet = _model("ZFNet")
CNNMnist = _model("CNNMnist")
LeNet5 = _model("LeNet5")
LeNet5Modern = _model("LeNet5Modern")
DenseNet = _model("DenseNet")
DenseNet121 = _model("DenseNet121")
DenseNet161 = _model("DenseNet161")
DenseNet169 = _model("DenseNet169")
DenseNet201 = _model("DenseNet201")
GoogLeNet = _model("GoogLeNet")
InceptionV3 = _model("InceptionV3")
Xception = _model("Xception")
ResNet = _model("ResNet")
ResNet18 = _model("ResNet18")
ResNet34 = _model("ResNet34")
ResNet50 = _model("ResNet50")
ResNet101 = _model("ResNet101")
ResNet152 = _model("ResNet152")
ResNetV2 = _model("ResNetV2")
ResNet50V2 = _model("ResNet50V2")
ResNet101V2 = _model("ResNet101V2")
ResNet152V2 = _model("ResNet152V2")
ResNetCifar = _model("ResNetCifar")
ResNet20 = _model("ResNet20")
ResNet32 = _model("ResNet32")
ResNet44 = _model("ResNet44")
ResNet56 = _model("ResNet56")
ResNet110 = _model("ResNet110")
VGG = _model("VGG")
VGG11 = _model("VGG11")
VGG11BN = _model("VGG11BN")
VGG13 = _model("VGG13")
VGG13BN = _model("VGG13BN")
VGG16 = _model("VGG16")
VGG16BN = _model("VGG16BN")
VGG19 = _model("VGG19")
VGG19BN = _model("VGG19BN")
AllConvNet = _model("AllConvNet")
DenseNetBC100 = _model("DenseNetBC100")
DenseNetBC250 = _model("DenseNetBC250")
HighwayNet = _model("HighwayNet")
NetworkInNetwork = _model("NetworkInNetwork")
Plain20 = _model("Plain20")
Plain32 = _model("Plain32")
Plain44 = _model("Plain44")
Plain56 = _model("Plain56")
Plain110 = _model("Plain110")
CapsNet = _model("CapsNet")
CapsNetBaseline = _model("CapsNetBaseline")
WCTAutoencoder = _model("WCTAutoencoder")
WaveNet = _model("WaveNet")
WaveNetScorer = _model("WaveNetScorer")
UNet = _model("UNet")
SegNet = _model("SegNet")
FCN = _model("FCN")
FCN8s = _model("FCN8s")
FCN16s = _model("FCN16s")
FCN32s = _model("FCN32s")
DilatedNet = _model("DilatedNet")
ConvAutoencoder = _model("ConvAutoencoder")
TDNN = _model("TDNN")
SpectrogramCNN = _model("SpectrogramCNN")
TextCNN = _model("TextCNN")
DilatedTextCNN = _model("DilatedTextCNN")
MLP = _model("MLP")
ZipCodeNet = _model("ZipCodeNet")
KerasMnistCNN = _model("KerasMnistCNN")
KerasCifarCNN = _model("KerasCifarCNN")
AlexNetCifar = _model("AlexNetCifar")
PlainInit = _model("PlainInit")
InceptionCifar = _model("InceptionCifar")
PreActResNet164 = _model("PreActResNet164")
PreActResNet1001 = _model("PreActResNet1001")
ResNet1202 = _model("ResNet1202")

__all__ = [
    "DEFAULT_INPUT_SHAPES",
    "LAYER_NAMES",
    "MODEL_NAMES",
    "get_model",
    *LAYER_NAMES,
    *MODEL_NAMES,
]
