"""cnn_jax from ``flax.nnx``: every layer and model as an NNX module.

::

    from flax import nnx
    from cnn_jax import nnx as cnnx

    model = cnnx.ResNet20(num_classes=10, rngs=nnx.Rngs(0))    # initialized
    logits, features = model(x)              # training mode, as nnx.BatchNorm
    model.eval()                             # running averages, no dropout
    model = cnnx.bridge(any_linen_module, sample_x, rngs=nnx.Rngs(0))

Design: the NNX forms are ``flax.nnx.bridge.ToNNX`` wrappers (:class:`Bridged`) of
the linen modules, not a second implementation. One definition per architecture
means the NNX and linen forms compute the same function by construction, have the
same variable tree (``model.conv1['kernel']`` is linen's
``params['conv1']['kernel']``), so pretrained weights, ``cnn_jax.weights`` converters
and linen checkpoints load unchanged (``load_linen_variables``), and cnn_jax's
conventions (PyTorch-style ``BatchNorm`` momentum and unbiased running variance,
initializers, fast paths) hold in both. The price is a linen ``apply`` per call,
paid at trace time: under ``nnx.jit`` the computation is linen's (plus the draw of
the call's keys).

What the wrapper adds to ``ToNNX`` (see :mod:`cnn_jax.nnx.wrapper`): initialization
from a sample or a ``jax.ShapeDtypeStruct`` under ``jit``; the ``train`` flag driven by
``model.train()``/``model.eval()`` (``deterministic``) or per call (``train=``);
``batch_stats`` as ``nnx.BatchStat`` updated in place in training mode; dropout keys
from the module's ``nnx.Rngs``.

Named constructors (:mod:`cnn_jax.nnx.constructors`) mirror ``cnn_jax.layers`` (the
linen modules; ``input_shape=`` required) and ``cnn_jax.models`` (``input_shape=``
defaults to the published size); ``get_model(name, rngs=...)`` mirrors
``cnn_jax.models.get_model``. The pure functions of ``cnn_jax.ops`` and
``cnn_jax.layers`` (activations, initializers) need no wrapper.
"""

from cnn_jax.nnx.constructors import (
    DEFAULT_INPUT_SHAPES,
    LAYER_NAMES,
    MODEL_NAMES,
    VGG,
    VGG11,
    VGG11BN,
    VGG13,
    VGG13BN,
    VGG16,
    VGG16BN,
    VGG19,
    VGG19BN,
    AlexNet,
    AlexNetPaper,
    AllConvNet,
    BatchNorm,
    CapsNet,
    CapsNetBaseline,
    CNNMnist,
    Conv,
    ConvTranspose,
    DenseNet,
    DenseNet121,
    DenseNet161,
    DenseNet169,
    DenseNet201,
    DenseNetBC100,
    DenseNetBC250,
    DepthwiseConv,
    DepthwiseSeparableConv,
    GatedActivation,
    GoogLeNet,
    GroupNorm,
    HighwayNet,
    InceptionV3,
    InstanceNorm,
    LayerNorm,
    LeNet5,
    LeNet5Modern,
    LocallyConnected,
    LocalResponseNorm,
    Maxout,
    NetworkInNetwork,
    Plain20,
    Plain32,
    Plain44,
    Plain56,
    Plain110,
    PreActResNet164,
    PreActResNet1001,
    PReLU,
    PrimaryCaps,
    ResNet,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet44,
    ResNet50,
    ResNet50V2,
    ResNet56,
    ResNet101,
    ResNet101V2,
    ResNet110,
    ResNet152,
    ResNet152V2,
    ResNet1202,
    ResNetCifar,
    ResNetV2,
    RoutingCaps,
    TiledConv,
    Xception,
    ZFNet,
    get_model,
)
from cnn_jax.nnx.wrapper import Bridged, bridge

__all__ = [
    "DEFAULT_INPUT_SHAPES",
    "LAYER_NAMES",
    "MODEL_NAMES",
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
    "AlexNetPaper",
    "AllConvNet",
    "BatchNorm",
    "Bridged",
    "CNNMnist",
    "CapsNet",
    "CapsNetBaseline",
    "Conv",
    "ConvTranspose",
    "DenseNet",
    "DenseNet121",
    "DenseNet161",
    "DenseNet169",
    "DenseNet201",
    "DenseNetBC100",
    "DenseNetBC250",
    "DepthwiseConv",
    "DepthwiseSeparableConv",
    "GatedActivation",
    "GoogLeNet",
    "GroupNorm",
    "HighwayNet",
    "InceptionV3",
    "InstanceNorm",
    "LayerNorm",
    "LeNet5",
    "LeNet5Modern",
    "LocalResponseNorm",
    "LocallyConnected",
    "Maxout",
    "NetworkInNetwork",
    "PReLU",
    "Plain20",
    "Plain32",
    "Plain44",
    "Plain56",
    "Plain110",
    "PreActResNet164",
    "PreActResNet1001",
    "PrimaryCaps",
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
    "RoutingCaps",
    "TiledConv",
    "Xception",
    "ZFNet",
    "bridge",
    "get_model",
]
