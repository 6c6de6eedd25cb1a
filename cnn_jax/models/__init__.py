"""Model families. Every model is ``__call__(x, train) -> (logits, features)``.

Each family lives in its own file (``resnet`` holds ResNet v1 for ImageNet and
CIFAR, ``resnet_v2`` Keras' pre-activation ResNets); named variants are
``functools.partial``s of the family's module, importable here under the names people
know (``ResNet50``, ``VGG16BN``, ...) and registered in ``MODELS`` under the lower-case
names configs use (torchvision's constructor names where torchvision has the model).
Every model checks its attributes when built and its input when called, raising a
``ValueError`` that names the argument and its value (``cnn_jax.models._common``).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn

from cnn_jax.models.alexnet import AlexNet, AlexNetPaper, ZFNet
from cnn_jax.models.alexnet_cifar import AlexNetCifar
from cnn_jax.models.allconv import AllConvNet, NetworkInNetwork
from cnn_jax.models.capsnet import CapsNet, CapsNetBaseline
from cnn_jax.models.context_net import DilatedNet
from cnn_jax.models.conv_autoencoder import ConvAutoencoder
from cnn_jax.models.densenet import DenseNet, DenseNet121, DenseNet161, DenseNet169, DenseNet201
from cnn_jax.models.densenet_bc import DenseNetBC100, DenseNetBC250
from cnn_jax.models.fcn import FCN
from cnn_jax.models.googlenet import GoogLeNet
from cnn_jax.models.highway import HighwayNet
from cnn_jax.models.inception import InceptionV3
from cnn_jax.models.inception_module import InceptionCifar
from cnn_jax.models.keras_slides import KerasCifarCNN, KerasMnistCNN
from cnn_jax.models.lenet import LeNet5, LeNet5Modern
from cnn_jax.models.mlp_mnist import MLP
from cnn_jax.models.plain_cifar import Plain20, Plain32, Plain44, Plain56, Plain110, ResNet1202
from cnn_jax.models.plain_init import PlainInit
from cnn_jax.models.preact_resnet import PreActResNet164, PreActResNet1001
from cnn_jax.models.resnet import (
    ResNet,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet44,
    ResNet50,
    ResNet56,
    ResNet101,
    ResNet110,
    ResNet152,
    ResNetCifar,
)
from cnn_jax.models.resnet_v2 import ResNet50V2, ResNet101V2, ResNet152V2, ResNetV2
from cnn_jax.models.segnet import SegNet
from cnn_jax.models.simple import CNNMnist
from cnn_jax.models.spectrogram_cnn import SpectrogramCNN
from cnn_jax.models.tdnn import TDNN
from cnn_jax.models.text_cnn import DilatedTextCNN, TextCNN
from cnn_jax.models.unet import UNet
from cnn_jax.models.vgg import (
    VGG,
    VGG11,
    VGG11BN,
    VGG13,
    VGG13BN,
    VGG16,
    VGG16BN,
    VGG19,
    VGG19BN,
)
from cnn_jax.models.wavenet import WaveNet
from cnn_jax.models.wavenet_scorer import WaveNetScorer
from cnn_jax.models.xception import Xception
from cnn_jax.models.zipcode import ZipCodeNet
from cnn_jax.style.wct import WCTAutoencoder

FCN32s = functools.partial(FCN, skips=0)
FCN16s = functools.partial(FCN, skips=1)
FCN8s = functools.partial(FCN, skips=2)

__all__ = [
    "FCN",
    "MLP",
    "MODELS",
    "TDNN",
    "VGG",
    "VGG11",
    "VGG11BN",
    "VGG13",
    "VGG13BN",
    "VGG16",
    "VGG16BN",
    "VGG19",
    "VGG19BN",
    "AlexNet",
    "AlexNetCifar",
    "AlexNetPaper",
    "AllConvNet",
    "CNNMnist",
    "CapsNet",
    "CapsNetBaseline",
    "ConvAutoencoder",
    "DenseNet",
    "DenseNet121",
    "DenseNet161",
    "DenseNet169",
    "DenseNet201",
    "DenseNetBC100",
    "DenseNetBC250",
    "DilatedNet",
    "DilatedTextCNN",
    "FCN8s",
    "FCN16s",
    "FCN32s",
    "GoogLeNet",
    "HighwayNet",
    "InceptionCifar",
    "InceptionV3",
    "KerasCifarCNN",
    "KerasMnistCNN",
    "LeNet5",
    "LeNet5Modern",
    "NetworkInNetwork",
    "Plain20",
    "Plain32",
    "Plain44",
    "Plain56",
    "Plain110",
    "PlainInit",
    "PreActResNet164",
    "PreActResNet1001",
    "ResNet",
    "ResNet18",
    "ResNet20",
    "ResNet32",
    "ResNet34",
    "ResNet44",
    "ResNet50",
    "ResNet50V2",
    "ResNet56",
    "ResNet101",
    "ResNet101V2",
    "ResNet110",
    "ResNet152",
    "ResNet152V2",
    "ResNet1202",
    "ResNetCifar",
    "ResNetV2",
    "SegNet",
    "SpectrogramCNN",
    "TextCNN",
    "UNet",
    "WCTAutoencoder",
    "WaveNet",
    "WaveNetScorer",
    "Xception",
    "ZFNet",
    "ZipCodeNet",
    "get_model",
    "model_class",
]

#: Models by the names configs use.
MODELS: dict[str, Any] = {
    "lenet5": LeNet5,
    "lenet5_modern": LeNet5Modern,
    "cnn_mnist": CNNMnist,
    "alexnet": AlexNet,
    "alexnet_paper": AlexNetPaper,
    "zfnet": ZFNet,
    "vgg11": VGG11,
    "vgg13": VGG13,
    "vgg16": VGG16,
    "vgg19": VGG19,
    "vgg11_bn": VGG11BN,
    "vgg13_bn": VGG13BN,
    "vgg16_bn": VGG16BN,
    "vgg19_bn": VGG19BN,
    "googlenet": GoogLeNet,
    "inception_v3": InceptionV3,
    "xception": Xception,
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "resnet101": ResNet101,
    "resnet152": ResNet152,
    "resnet50_v2": ResNet50V2,
    "resnet101_v2": ResNet101V2,
    "resnet152_v2": ResNet152V2,
    "resnet20": ResNet20,
    "resnet32": ResNet32,
    "resnet44": ResNet44,
    "resnet56": ResNet56,
    "resnet110": ResNet110,
    "densenet121": DenseNet121,
    "densenet169": DenseNet169,
    "densenet201": DenseNet201,
    "densenet161": DenseNet161,
    "resnet1202": ResNet1202,
    "plain20": Plain20,
    "plain32": Plain32,
    "plain44": Plain44,
    "plain56": Plain56,
    "plain110": Plain110,
    "preact_resnet164": PreActResNet164,
    "preact_resnet1001": PreActResNet1001,
    "highway": HighwayNet,
    "densenet_bc100": DenseNetBC100,
    "densenet_bc250": DenseNetBC250,
    "all_cnn_c": AllConvNet,
    "nin": NetworkInNetwork,
    "capsnet": CapsNet,
    "capsnet_baseline": CapsNetBaseline,
    "wct_autoencoder": WCTAutoencoder,
    "wavenet": WaveNet,
    "wavenet_scorer": WaveNetScorer,
    "unet": UNet,
    "segnet": SegNet,
    "fcn32s": FCN32s,
    "fcn16s": FCN16s,
    "fcn8s": FCN8s,
    "dilated_net": DilatedNet,
    "conv_autoencoder": ConvAutoencoder,
    "tdnn": TDNN,
    "spectrogram_cnn": SpectrogramCNN,
    "textcnn": TextCNN,
    "dilated_textcnn": DilatedTextCNN,
    "mlp_mnist": MLP,
    "zipcode": ZipCodeNet,
    "keras_mnist_cnn": KerasMnistCNN,
    "keras_cifar_cnn": KerasCifarCNN,
    "alexnet_cifar": AlexNetCifar,
    "plain_init": PlainInit,
    "inception_cifar": InceptionCifar,
}


def model_class(name: str) -> type[nn.Module]:
    """The flax module class behind a registered name (through any partials).

    Args:
      name: a key of ``MODELS``.

    Returns:
      The class.

    Raises:
      ValueError: for an unknown name.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    while isinstance(cls, functools.partial):
        cls = cls.func
    return cls


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds a model by name.

    Args:
      name: a key of ``MODELS``.
      **kwargs: the model's attributes (``num_classes``, ``dtype``, ...), overriding
        the variant's.

    Returns:
      The flax module.

    Raises:
      ValueError: for an unknown name.
      TypeError: for attributes the model does not have.
    """
    cls = model_class(name)
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    unknown = set(kwargs) - fields
    if unknown:
        raise TypeError(
            f"model {name!r} has no attributes {sorted(unknown)}; it takes {sorted(fields)}"
        )
    return MODELS[name](**kwargs)
