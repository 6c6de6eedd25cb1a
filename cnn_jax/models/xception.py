"""Xception (Chollet 2017), exactly as ``keras.applications.Xception``.

"Xception: Deep Learning with Depthwise Separable Convolutions" (François Chollet,
CVPR 2017, arXiv:1610.02357), figure 5: a linear stack of depthwise separable
convolutions with residual connections.

* Entry flow: ``block1``, a 3x3/2 and a 3x3 convolution (32, 64 channels; 'valid'
  padding, as Keras) each with batch norm and ReLU; ``block2``-``block4`` (128, 256,
  728 channels), each two separable 3x3 convolutions with batch norm (a ReLU before
  each, except before the first of ``block2``, whose input is already rectified)
  and a 3x3/2 'same' max pool, plus a shortcut of a strided 1x1 convolution and
  batch norm.
* Middle flow: ``block5``-``block12``, each three (ReLU, separable 3x3 to 728, batch
  norm) with an identity shortcut.
* Exit flow: ``block13`` (separable convolutions to 728 and 1024, max pool, strided
  1x1 shortcut), ``block14`` (separable convolutions to 1536 and 2048, each with batch
  norm and ReLU), global average pooling and the ``predictions`` layer (logits; Keras
  applies a softmax). The paper's optional fully-connected layers are not used.

Convolutions and separable convolutions have no bias; every separable convolution has
depth multiplier 1 and no nonlinearity between its depthwise and pointwise steps.
Batch norm: epsilon 1e-3, momentum 0.99, biased running variance (Keras'
conventions). Initialization is Keras': Glorot-uniform kernels (for the depthwise
kernel the fans, ``9 C`` and ``9``, sum as Keras counts them), zero biases, batch norm
scale 1 and bias 0. Parameters: 22,910,480 for 1000 classes (Keras' ``count_params``,
which includes the 54,528 batch-norm statistics), 22,855,952 trainable. Inputs
299x299, at least 71x71.

Layer names equal Keras' (``block1_conv1``, ``block1_conv1_bn``, ``block2_sepconv1``,
``block2_sepconv1_bn``, ..., ``predictions``). Keras leaves the four shortcut
convolutions and their batch norms unnamed; they are named here as a fresh Keras 3
session names them: ``conv2d``, ``batch_normalization`` (``block2``) ... ``conv2d_3``,
``batch_normalization_3`` (``block13``). So ``cnn_jax.weights.from_keras`` works with its
default key on weights keyed by layer name; weights saved in a session with other
layers created before get other numbers (``conv2d_4``), which ``keras_layer_names``
renames (as it renames files keyed by layer class rather than name).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from cnn_jax import ops
from cnn_jax.layers import Conv, DepthwiseSeparableConv
from cnn_jax.models._common import (
    Array,
    KerasBatchNorm,  # Keras' defaults, as keras.applications.Xception uses them
    ModuleDef,
    check_images,
    check_positive_int,
)
from cnn_jax.weights import WeightSpec

__all__ = [
    "KERAS_SPECS",
    "KerasBatchNorm",
    "Xception",
    "keras_layer_names",
    "keras_layers",
]

#: Blocks with a strided shortcut: (block, separable convolution widths, shortcut name).
_REDUCTION_BLOCKS: tuple[tuple[int, tuple[int, int], str], ...] = (
    (2, (128, 128), ""),
    (3, (256, 256), "_1"),
    (4, (728, 728), "_2"),
    (13, (728, 1024), "_3"),
)
_MIDDLE_BLOCKS = tuple(range(5, 13))


def _xception_block(
    model: Xception,
    x: Array,
    index: int,
    filters: tuple[int, ...],
    shortcut: str | None,
    first_act: bool,
    train: bool,
) -> Array:
    """One residual block of separable convolutions (figure 5), named as in Keras.

    ``len(filters)`` times (ReLU, separable 3x3 ``block{index}_sepconv{j}``, batch norm
    ``block{index}_sepconv{j}_bn``), the first ReLU left out unless ``first_act``; with
    ``shortcut`` (a name suffix) a 3x3/2 'same' max pool follows and the shortcut is a
    1x1/2 convolution ``conv2d{shortcut}`` and batch norm
    ``batch_normalization{shortcut}``; otherwise the shortcut is the identity. The
    layers are created inside ``model``'s compact ``__call__``, so their names stay flat
    like Keras layer names (a submodule would nest them).

    Args:
      model: the ``Xception`` being applied (its ``conv``, ``norm``, ``act``, ``dtype``).
      x: ``(N, H, W, C)``.
      index: the Keras block number.
      filters: the separable convolutions' widths.
      shortcut: ``None`` for the identity, else the name suffix of the strided shortcut.
      first_act: apply the activation before the first separable convolution.
      train: batch statistics in training mode.

    Returns:
      The block's output.
    """
    sep = functools.partial(
        model.separable_conv,
        kernel_size=3,
        padding="SAME",
        use_bias=False,
        depthwise_init="glorot_uniform",
        pointwise_init="glorot_uniform",
        dtype=model.dtype,
    )
    norm = functools.partial(model.norm, dtype=model.dtype)
    h = x
    for j, width in enumerate(filters, start=1):
        if j > 1 or first_act:
            h = model.act(h)
        name = f"block{index}_sepconv{j}"
        h = sep(width, name=name)(h)
        h = norm(name=f"{name}_bn")(h, train=train)
    if shortcut is None:
        return h + x
    h = ops.max_pool(h, 3, 2, padding="SAME")
    r = model.conv(
        filters[-1],
        1,
        strides=2,
        padding="SAME",
        use_bias=False,
        kernel_init="glorot_uniform",
        dtype=model.dtype,
        name=f"conv2d{shortcut}",
    )(x)
    r = norm(name=f"batch_normalization{shortcut}")(r, train=train)
    return h + r


class Xception(nn.Module):
    """Xception as ``keras.applications.Xception`` (see the module docstring).

    Attributes:
      num_classes: output classes.
      conv: the convolution (entry convolutions and shortcuts).
      separable_conv: the depthwise separable convolution.
      norm: the normalization (default: Keras' batch norm, epsilon 1e-3).
      act: the activation.
      dtype: computation dtype.
    """

    num_classes: int = 1000
    conv: ModuleDef = Conv
    separable_conv: ModuleDef = DepthwiseSeparableConv
    norm: ModuleDef = KerasBatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, H, W, C)`` images, 299x299 (at least 71x71), scaled to ``[-1, 1]``
            (Keras' ``xception.preprocess_input``).
          train: batch statistics in training mode.

        Returns:
          ``(logits, features)``: ``features`` holds every block's output
          (``block1`` ... ``block14``) and ``pre_logits`` (the pooled 2048 values).

        Raises:
          ValueError: for inputs that are not ``(N, H, W, C)``.
        """
        check_images(x, "Xception")
        num_classes = self.num_classes
        conv = functools.partial(
            self.conv, use_bias=False, kernel_init="glorot_uniform", dtype=self.dtype
        )
        norm = functools.partial(self.norm, dtype=self.dtype)
        f: dict[str, Array] = {}
        h = conv(32, 3, strides=2, padding="VALID", name="block1_conv1")(x)
        h = self.act(norm(name="block1_conv1_bn")(h, train=train))
        h = conv(64, 3, padding="VALID", name="block1_conv2")(h)
        h = self.act(norm(name="block1_conv2_bn")(h, train=train))
        f["block1"] = h
        blocks = [(i, w, s) for i, w, s in _REDUCTION_BLOCKS if i < 5]
        blocks += [(i, (728, 728, 728), None) for i in _MIDDLE_BLOCKS]
        blocks += [(i, w, s) for i, w, s in _REDUCTION_BLOCKS if i > 5]
        for index, filters, shortcut in blocks:
            h = _xception_block(self, h, index, filters, shortcut, index != 2, train)
            f[f"block{index}"] = h
        for j, width in enumerate((1536, 2048), start=1):
            name = f"block14_sepconv{j}"
            h = self.separable_conv(
                width,
                3,
                padding="SAME",
                use_bias=False,
                depthwise_init="glorot_uniform",
                pointwise_init="glorot_uniform",
                dtype=self.dtype,
                name=name,
            )(h)
            h = self.act(norm(name=f"{name}_bn")(h, train=train))
        f["block14"] = h
        h = h.mean(axis=(1, 2))
        f["pre_logits"] = h
        logits = nn.Dense(
            num_classes,
            kernel_init=nn.initializers.glorot_uniform(),
            dtype=self.dtype,
            name="predictions",
        )(h)
        return logits, f


def keras_layers() -> list[tuple[str, str]]:
    """Xception's layers with weights, in Keras' (topological) order.

    Returns:
      ``[(layer name, Keras 3 class name in snake case)]``, e.g.
      ``('block2_sepconv1', 'separable_conv2d')``.
    """
    out = [
        ("block1_conv1", "conv2d"),
        ("block1_conv1_bn", "batch_normalization"),
        ("block1_conv2", "conv2d"),
        ("block1_conv2_bn", "batch_normalization"),
    ]
    blocks = [(i, 2, s) for i, _, s in _REDUCTION_BLOCKS if i < 5]
    blocks += [(i, 3, None) for i in _MIDDLE_BLOCKS]
    blocks += [(i, 2, s) for i, _, s in _REDUCTION_BLOCKS if i > 5] + [(14, 2, None)]
    for index, n, shortcut in blocks:
        for j in range(1, n + 1):
            out += [
                (f"block{index}_sepconv{j}", "separable_conv2d"),
                (f"block{index}_sepconv{j}_bn", "batch_normalization"),
            ]
        if shortcut is not None:
            out += [
                (f"conv2d{shortcut}", "conv2d"),
                (f"batch_normalization{shortcut}", "batch_normalization"),
            ]
    return [*out, ("predictions", "dense")]


_KERAS3_NAME = re.compile(r"^(conv2d|separable_conv2d|batch_normalization|dense)(_\d+)?$")
_SHORTCUT_NAME = re.compile(r"^(conv2d|batch_normalization)(?:_(\d+))?$")


def _class_keys_to_layer_names(weights: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    counts: dict[str, int] = {}
    rename: dict[str, str] = {}
    for layer, kind in keras_layers():
        k = counts.get(kind, 0)
        counts[kind] = k + 1
        rename[kind if k == 0 else f"{kind}_{k}"] = layer
    unknown = sorted(set(weights) - set(rename))
    if unknown:
        raise ValueError(f"`weights` has layer keys that Xception does not have: {unknown[:10]}")
    return {rename[k]: v for k, v in weights.items()}


def keras_layer_names(weights: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    """Keys Xception's Keras weights by our module names, whichever session saved them.

    * The four shortcut convolutions and batch norms are unnamed in Keras' code, so
      their names come from the saving session's counters (``conv2d_4`` ... ``conv2d_7``
      if the session built one Xception before; ``conv2d_1`` ... ``conv2d_4`` in Keras 2
      files). They are created in block order, so in each kind the ``k``-th smallest
      number is ``block2``, ``block3``, ``block4``, ``block13``'s, renamed to ours
      (``conv2d``, ``conv2d_1``, ..., as a fresh Keras 3 session names them).
    * Weights keyed by class and position instead of layer name (the group names of a
      Keras 3 ``.weights.h5`` file, ``separable_conv2d_5``: the ``k``-th layer of a class
      in the model's topological order), as when the layer names are not recorded, are
      mapped through ``keras_layers``.

    Args:
      weights: ``{key: [arrays]}``, e.g. from ``cnn_jax.weights.load_keras_weights``.

    Returns:
      ``{our module name: [arrays]}``, for ``cnn_jax.weights.from_keras`` with its
      default key.

    Raises:
      ValueError: if the keys do not fit Xception.
    """
    if "block2_sepconv1" not in weights and any(_KERAS3_NAME.match(k) for k in weights):
        return _class_keys_to_layer_names(weights)
    out = dict(weights)
    for kind in ("conv2d", "batch_normalization"):
        found = [(m, k) for k in weights if (m := _SHORTCUT_NAME.match(k)) and m[1] == kind]
        if not found:
            continue
        if len(found) != len(_REDUCTION_BLOCKS):
            raise ValueError(
                f"`weights` has {len(found)} unnamed {kind} layers "
                f"({sorted(k for _, k in found)}); Xception has {len(_REDUCTION_BLOCKS)}"
            )
        found.sort(key=lambda mk: int(mk[0][2] or 0))
        for key in (k for _, k in found):
            del out[key]
        for (_, _, suffix), (_, key) in zip(_REDUCTION_BLOCKS, found, strict=True):
            out[f"{kind}{suffix}"] = weights[key]
    return out


#: ``Xception``: ``keras.applications.Xception``. Layer names as keys; weights saved by a
#: Keras session that had built other models first need ``keras_layer_names``.
KERAS_SPECS: dict[str, WeightSpec] = {
    "Xception": WeightSpec(model=Xception, input_size=299),
}
