"""VGG-19's convolutional part as a named-feature extractor, with its preprocessing.

:class:`VGGFeatures` holds exactly the convolutions of ``cnn_jax.models.VGG19``
(the modules ``features_0`` ... ``features_34``, torchvision's ``features.N``), so
the ``params`` of a ``VGG19`` (e.g. from ``cnn_jax.weights.load_torchvision('vgg19',
'vgg19.pth')``) apply to it unchanged, and :func:`load_vgg19` reads torchvision's
``vgg19`` state dict directly. The network stops at the deepest requested layer.

Layer names follow the paper and Caffe: ``conv{b}_{i}`` is convolution ``i`` of
block ``b`` before its ReLU, ``relu{b}_{i}`` after it, ``pool{b}`` after the block's
pooling. (Caffe's ReLUs are in place, so the blobs Gatys et al. call ``conv4_2``
hold the rectified responses: ``relu4_2`` here.)

Preprocessing (:func:`preprocess`) must match the weights: ``'torchvision'``
(torchvision's ``vgg19`` .pth: RGB in [0, 1], minus the ImageNet mean, divided by the
standard deviation) or ``'caffe'`` (the original VGG release and its PyTorch
conversions: RGB in [0, 1] scaled to [0, 255], reordered to BGR, minus the BGR mean
pixel (103.939, 116.779, 123.68)).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import ops
from cnn_jax.layers import Conv, get_initializer

__all__ = [
    "LAYERS",
    "PREPROCESSING",
    "VGGFeatures",
    "check_layers",
    "deprocess",
    "layer_stride",
    "load_vgg19",
    "min_image_size",
    "preprocess",
    "select_params",
]

Array = Any

#: VGG-19 configuration E: conv widths per block.
_BLOCKS = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
#: torchvision's VGG init (``cnn_jax.models.vgg``): Kaiming-normal, ``fan_out``, ReLU gain.
_CONV_INIT = get_initializer("he_normal", mode="fan_out", distribution="normal")


def _layer_table() -> dict[str, tuple[int, str, int]]:
    """Maps name -> (torchvision ``features`` index, kind, block)."""
    table: dict[str, tuple[int, str, int]] = {}
    index = 0
    for b, widths in enumerate(_BLOCKS, start=1):
        for i in range(1, len(widths) + 1):
            table[f"conv{b}_{i}"] = (index, "conv", b)
            table[f"relu{b}_{i}"] = (index + 1, "relu", b)
            index += 2
        table[f"pool{b}"] = (index, "pool", b)
        index += 1
    return table


_TABLE = _layer_table()
#: Every layer name, in network order.
LAYERS: tuple[str, ...] = tuple(sorted(_TABLE, key=lambda n: (_TABLE[n][0], _TABLE[n][1])))

_MEAN_STD = {
    "torchvision": (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])),
    "caffe": (np.array([103.939, 116.779, 123.68]), None),
}
#: The accepted ``preprocessing`` values.
PREPROCESSING: tuple[str, ...] = tuple(_MEAN_STD)


def check_layers(layers: Any, name: str = "layers") -> tuple[str, ...]:
    """Checks a sequence of layer names.

    Raises:
      ValueError: naming ``name`` for an empty sequence or an unknown layer.
    """
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"`{name}` (={layers!r}) must be a non-empty sequence of layer names")
    for layer in layers:
        if layer not in _TABLE:
            raise ValueError(
                f"`{name}` (={layers!r}) holds unknown layer {layer!r}; known: {', '.join(LAYERS)}"
            )
    return tuple(layers)


def layer_stride(layer: str) -> int:
    """The layer's downsampling factor relative to the input (1 for block 1 convs)."""
    check_layers((layer,), "layer")
    _, kind, block = _TABLE[layer]
    return 2 ** (block - 1 + (kind == "pool"))


def min_image_size(layers: Sequence[str]) -> int:
    """The smallest image side for which every layer of ``layers`` is at least 1x1."""
    return max(layer_stride(layer) for layer in check_layers(layers))


def _check_preprocessing(preprocessing: Any) -> None:
    if preprocessing not in _MEAN_STD:
        raise ValueError(
            f"`preprocessing` (={preprocessing!r}) must be one of {', '.join(PREPROCESSING)}"
        )


def preprocess(images: Array, preprocessing: str = "torchvision") -> Array:
    """RGB images in [0, 1], ``(..., H, W, 3)`` -> the network's input.

    Raises:
      ValueError: for an unknown ``preprocessing`` or a last axis other than 3.
    """
    _check_preprocessing(preprocessing)
    if images.shape[-1] != 3:
        raise ValueError(f"`images` must have 3 (RGB) channels last, got shape {images.shape}")
    mean, std = _MEAN_STD[preprocessing]
    if std is not None:
        return (images - mean.astype(np.float32)) / std.astype(np.float32)
    return images[..., ::-1] * 255.0 - mean.astype(np.float32)


def deprocess(x: Array, preprocessing: str = "torchvision") -> Array:
    """The inverse of :func:`preprocess` (not clipped)."""
    _check_preprocessing(preprocessing)
    mean, std = _MEAN_STD[preprocessing]
    if std is not None:
        return x * std.astype(np.float32) + mean.astype(np.float32)
    return ((x + mean.astype(np.float32)) / 255.0)[..., ::-1]


class VGGFeatures(nn.Module):
    """VGG-19's convolutions up to the deepest of ``layers``, returning them by name.

    Attributes:
      layers: the layer names to return (see :data:`LAYERS`).
      pooling: ``'max'`` (as the network was trained) or ``'avg'`` (2x2 average
        pooling, Gatys et al.'s choice for image synthesis).
      dtype: computation dtype.

    The parameters are ``features_{i}`` (``kernel`` HWIO, ``bias``) for the
    convolutions up to the deepest layer: a subset of ``cnn_jax.models.VGG19``'s
    ``params`` with the same names, shapes and torchvision initialization.
    """

    layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    pooling: str = "max"
    dtype: Any = None

    def __post_init__(self) -> None:
        check_layers(self.layers)
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"`pooling` (={self.pooling!r}) must be 'max' or 'avg'")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> dict[str, Array]:
        """Runs the network on preprocessed ``(N, H, W, 3)`` images.

        Returns:
          ``{layer: (N, h, w, C)}`` for each requested layer.

        Raises:
          ValueError: for input that is not ``(N, H, W, 3)`` or is smaller than
            :func:`min_image_size` of the layers.
        """
        need = min_image_size(self.layers)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"VGGFeatures needs (N, H, W, 3) images, got shape {x.shape}")
        if min(x.shape[1:3]) < need:
            raise ValueError(
                f"images of {x.shape[1]}x{x.shape[2]} are too small for layers "
                f"{tuple(self.layers)}: each side must be at least {need}"
            )
        deepest = max(_TABLE[n][0] for n in self.layers)
        wanted = set(self.layers)
        conv = functools.partial(
            Conv,
            kernel_size=3,
            padding=1,
            kernel_init=_CONV_INIT,
            bias_init="zeros",
            dtype=self.dtype,
        )
        out: dict[str, Array] = {}
        h, index = x, 0
        for b, widths in enumerate(_BLOCKS, start=1):
            for i, width in enumerate(widths, start=1):
                h = conv(width, name=f"features_{index}")(h)
                if f"conv{b}_{i}" in wanted:
                    out[f"conv{b}_{i}"] = h
                h = nn.relu(h)
                if f"relu{b}_{i}" in wanted:
                    out[f"relu{b}_{i}"] = h
                index += 2
                if index > deepest:
                    return out
            h = ops.max_pool(h, 2, 2) if self.pooling == "max" else ops.avg_pool(h, 2, 2)
            if f"pool{b}" in wanted:
                out[f"pool{b}"] = h
            index += 1
            if index > deepest:
                return out
        return out


def _conv_indices(layers: Sequence[str]) -> list[int]:
    deepest = max(_TABLE[n][0] for n in check_layers(layers))
    return [i for n, (i, kind, _) in sorted(_TABLE.items()) if kind == "conv" and i <= deepest]


def select_params(params: Mapping[str, Any], layers: Sequence[str]) -> dict[str, Any]:
    """The ``features_{i}`` entries of a VGG-19 ``params`` tree that ``layers`` need.

    Raises:
      ValueError: naming the missing modules.
    """
    if "params" in params and len(params) <= 2:
        params = params["params"]
    names = [f"features_{i}" for i in sorted(set(_conv_indices(layers)))]
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"`params` lack the VGG-19 modules {missing} needed for {tuple(layers)}")
    return {n: params[n] for n in names}


def load_vgg19(weights: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Reads torchvision's ``vgg19`` weights (``.pth``/``.safetensors``): the conv params.

    Args:
      weights: the file, or a state dict ``{key: array}`` with torchvision's keys.

    The classifier (``classifier.*``), if present, is ignored; a file holding only
    ``features.*`` works too. No code from the file is executed.

    Returns:
      ``{'features_0': {'kernel', 'bias'}, ..., 'features_34': ...}`` (all 16
      convolutions), for ``VGGFeatures.apply({'params': select_params(p, layers)}, x)``.

    Raises:
      ValueError: naming the file for a file that is not a VGG-19 state dict (other
        keys, other shapes, a batch-norm VGG), unreadable, or with NaN/Inf weights.
      FileNotFoundError: for a missing file.
    """
    from cnn_jax import weights as weights_lib

    path = "<state dict>" if isinstance(weights, Mapping) else weights
    state = dict(weights) if isinstance(weights, Mapping) else weights_lib.load_state_dict(path)
    conv_keys = {
        f"features.{i}.{leaf}" for i in _conv_indices(("relu5_4",)) for leaf in ("weight", "bias")
    }
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    model = VGGFeatures(layers=("relu5_4",))
    template = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    )
    others = sorted(k for k in state if not k.startswith(("features.", "classifier.")))
    if others or set(features) != conv_keys:
        extra = sorted(set(features) - conv_keys)[:5] + others[:5]
        lacking = sorted(conv_keys - set(features))[:5]
        raise ValueError(
            f"{str(path)!r} is not torchvision's vgg19 state dict: missing {lacking}, "
            f"unexpected {extra} (a vgg19_bn or another network?)"
        )
    try:
        loaded = weights_lib.from_torch(features, template)
    except ValueError as e:
        raise ValueError(f"{str(path)!r} does not fit VGG-19's convolutions: {e}") from e
    return jax.tree.map(jnp.asarray, loaded["params"])
