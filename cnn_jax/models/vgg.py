"""VGG (Simonyan & Zisserman 2015) as torchvision builds it.

"Very Deep Convolutional Networks for Large-Scale Image Recognition" (ICLR 2015,
arXiv:1409.1556).

Configurations A, B, D and E of the paper's Table 1 (VGG-11, -13, -16, -19): stacks of
3x3 convolutions (padding 1) with ReLU, each stack followed by 2x2 stride-2 max pooling,
channels 64, 128, 256, 512, 512; then, as torchvision, adaptive average pooling to 7x7
(the identity at 224x224) and the classifier 4096-4096-``num_classes`` with dropout 0.5
after the ReLU of the two hidden layers. ``batch_norm=True`` (``VGG11BN`` ...) inserts a
batch normalization between every convolution and its ReLU (torchvision's ``vgg*_bn``,
not in the paper). Configuration C (1x1 convolutions) and the LRN network A-LRN are
not built, as in torchvision.

Module names mirror torchvision's ``features.N`` and ``classifier.N`` indices
(``features_0``, ``features_1`` (a batch norm), ..., ``classifier_0``, ``classifier_3``,
``classifier_6``), so ``cnn_jax.weights.from_torch`` maps torchvision's state dicts
with its default key function. Initialization is torchvision's: Kaiming-normal
convolutions (``fan_out``, ReLU gain) with zero biases, ``N(0, 0.01)`` linear weights
with zero biases, batch norm scale 1 and bias 0.

Parameters with 1000 classes: VGG-11 132,863,336, VGG-13 133,047,848, VGG-16
138,357,544, VGG-19 143,667,240; with batch norm (scale and bias; the running
statistics are not parameters) VGG-11 132,868,840, VGG-13 133,053,736, VGG-16
138,365,992, VGG-19 143,678,248.

``features``: ``block1`` .. ``block5`` (each stack's output after its max pooling),
``pooled`` (the flattened 7x7 grid), ``fc6``, ``fc7`` (after the ReLU, before dropout),
``pre_logits`` (= ``fc7``, the input of the last layer) and ``logits``.

Every layer of the convolutional part is also sown into the ``'intermediates'``
collection under the paper's (and Caffe's) names, ``b`` the block and ``i`` the
convolution in it, both from 1: ``conv{b}_{i}`` (the convolution's output, before
batch norm and ReLU), ``bn{b}_{i}`` (after batch norm; ``batch_norm=True`` only),
``relu{b}_{i}`` (after the ReLU) and ``pool{b}`` (after the block's pooling), so VGG-19
has ``conv1_1`` ... ``conv5_4``. Sowing adds no parameters and costs nothing unless
the collection is mutable; ``cnn_jax.models.intermediates.tap`` reads them by name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv, get_initializer
from cnn_jax.models._common import (
    TORCH_CONV_INIT_FAN_OUT,
    Array,
    check_images,
    check_positive_int,
    check_rate,
)
from cnn_jax.ops._validate import is_int
from cnn_jax.weights import WeightSpec, permute_flatten

__all__ = [
    "CFGS",
    "TORCHVISION_SPECS",
    "VGG",
    "VGG11",
    "VGG11BN",
    "VGG13",
    "VGG13BN",
    "VGG16",
    "VGG16BN",
    "VGG19",
    "VGG19BN",
]

#: Table 1 of the paper (torchvision's ``cfgs``): conv widths, ``'M'`` a 2x2 max pool.
CFGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", *(256,) * 2, "M", *(512,) * 2, "M", *(512,) * 2, "M"),
    "B": (*(64,) * 2, "M", *(128,) * 2, "M", *(256,) * 2, "M", *(512,) * 2, "M", *(512,) * 2, "M"),
    "D": (*(64,) * 2, "M", *(128,) * 2, "M", *(256,) * 3, "M", *(512,) * 3, "M", *(512,) * 3, "M"),
    "E": (*(64,) * 2, "M", *(128,) * 2, "M", *(256,) * 4, "M", *(512,) * 4, "M", *(512,) * 4, "M"),
}


def _check_cfg(cfg: Any) -> tuple[int | str, ...]:
    if not isinstance(cfg, Sequence) or isinstance(cfg, str) or not cfg:
        raise ValueError(f"`cfg` (={cfg!r}) must be a non-empty sequence of widths and 'M'")
    for v in cfg:
        if v != "M" and (not is_int(v) or v < 1):
            raise ValueError(f"`cfg` (={cfg!r}) may hold only positive ints and 'M', not {v!r}")
    return tuple(cfg)


class VGG(nn.Module):
    """VGG as torchvision builds it (see the module docstring).

    Attributes:
      cfg: conv widths and ``'M'`` (max pooling), e.g. ``CFGS['D']``.
      batch_norm: a ``norm`` after every convolution (torchvision's ``vgg*_bn``).
      num_classes: output classes.
      dropout: dropout rate after the two hidden linear layers.
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization used with ``batch_norm`` (PyTorch's momentum 0.1 and
        epsilon 1e-5 are ``BatchNorm``'s defaults).
      act: the activation.
      dtype: computation dtype.
    """

    cfg: Sequence[int | str] = CFGS["A"]
    batch_norm: bool = False
    num_classes: int = 1000
    dropout: float = 0.5
    conv: Callable[..., nn.Module] = Conv
    norm: Callable[..., nn.Module] = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        _check_cfg(self.cfg)
        check_positive_int(self.num_classes, "num_classes")
        check_rate(self.dropout, "dropout")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images, each side at least ``2 ** (number of poolings)``
            (32 for the standard configurations; 224 for ImageNet).
          train: batch statistics and dropout (rng ``'dropout'``).

        Returns:
          ``(logits, features)``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)`` or is too small.
        """
        cfg = tuple(self.cfg)
        check_images(x, "VGG", 2 ** cfg.count("M"))
        conv = functools.partial(
            self.conv,
            kernel_size=3,
            padding=1,
            kernel_init=TORCH_CONV_INIT_FAN_OUT,
            bias_init="zeros",
            dtype=self.dtype,
        )
        f: dict[str, Array] = {}
        h, index, block, layer = x, 0, 1, 1
        for v in cfg:
            if v == "M":
                f[f"block{block}"] = h = ops.max_pool(h, 2, 2)
                self.sow("intermediates", f"pool{block}", h)
                index, block, layer = index + 1, block + 1, 1
                continue
            h = conv(v, name=f"features_{index}")(h)
            self.sow("intermediates", f"conv{block}_{layer}", h)
            if self.batch_norm:
                h = self.norm(dtype=self.dtype, name=f"features_{index + 1}")(h, train=train)
                self.sow("intermediates", f"bn{block}_{layer}", h)
            h = self.act(h)
            self.sow("intermediates", f"relu{block}_{layer}", h)
            index += 3 if self.batch_norm else 2
            layer += 1
        h = ops.adaptive_avg_pool(h, 7)
        f["pooled"] = h = h.reshape(h.shape[0], -1)
        dense = functools.partial(
            nn.Dense,
            kernel_init=get_initializer("normal", stddev=0.01),
            bias_init=get_initializer("zeros"),
            dtype=self.dtype,
        )
        f["fc6"] = h = self.act(dense(4096, name="classifier_0")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        f["fc7"] = f["pre_logits"] = h = self.act(dense(4096, name="classifier_3")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = dense(self.num_classes, name="classifier_6")(h)
        f["logits"] = logits
        return logits, f


VGG11 = functools.partial(VGG, cfg=CFGS["A"])
VGG11BN = functools.partial(VGG, cfg=CFGS["A"], batch_norm=True)
VGG13 = functools.partial(VGG, cfg=CFGS["B"])
VGG13BN = functools.partial(VGG, cfg=CFGS["B"], batch_norm=True)
VGG16 = functools.partial(VGG, cfg=CFGS["D"])
VGG16BN = functools.partial(VGG, cfg=CFGS["D"], batch_norm=True)
VGG19 = functools.partial(VGG, cfg=CFGS["E"])
VGG19BN = functools.partial(VGG, cfg=CFGS["E"], batch_norm=True)

_FIRST_LINEAR = {"classifier.0.weight": permute_flatten((512, 7, 7))}

#: torchvision's ``vgg11`` .. ``vgg19_bn``.
TORCHVISION_SPECS: dict[str, WeightSpec] = {
    name: WeightSpec(model=model, transforms=_FIRST_LINEAR, input_size=224, export=True)
    for name, model in {
        "vgg11": VGG11,
        "vgg11_bn": VGG11BN,
        "vgg13": VGG13,
        "vgg13_bn": VGG13BN,
        "vgg16": VGG16,
        "vgg16_bn": VGG16BN,
        "vgg19": VGG19,
        "vgg19_bn": VGG19BN,
    }.items()
}
