"""Deconvnet stacks (``cnn_jax.viz.deconvnet``) read from cnn_jax models and their variables.

:func:`deconv_stack` turns the convolutional part of a model into the
:class:`~cnn_jax.viz.deconvnet.Conv` / ``ReLU`` / ``MaxPool`` sequence it computes in
evaluation mode. A batch normalization right after a convolution is folded into it
(``kernel * g``, ``(bias - mean) * g + beta`` with ``g = scale / sqrt(var + eps)``):
in evaluation mode it is that affine map, and the deconvnet then uses the folded
filters' transpose. Supported, with the layer names the stack gets (each equal to a
``cnn_jax.models.intermediates.tap`` name of the model):

* ``VGG`` (any configuration, with or without batch norm): ``conv{b}_{i}`` (or
  ``bn{b}_{i}`` with batch norm, the folded convolution), ``relu{b}_{i}``, ``pool{b}``;
* ``CNNMnist``: ``bn{b}_{j}`` (convolution ``conv{b}_{j}`` and its batch norm folded),
  ``relu{b}_{j}``, ``block{b}``;
* ``LeNet5Modern``: ``C1``, ``c1`` (its ReLU), ``s2``, ``C3``, ``c3``, ``s4``;
* ``AlexNet`` (torchvision's, without ``norm``): ``features_{k}``, ``conv{i}`` (the
  ReLUs), ``pool{1,2,5}``;
* ``ZFNet`` and ``AlexNetPaper`` (with their local response normalization, or none):
  ``conv{i}/__call__`` (the convolution), ``conv{i}`` (its ReLU), ``pool{i}``,
  ``norm{i}`` (an :class:`~cnn_jax.viz.deconvnet.LRN`, passed through on the way down
  as in Zeiler & Fergus' deconvnet; within each tower for AlexNetPaper's two towers,
  whose grouped convolutions keep their groups).

With ImageNet weights (torchvision's files; nothing is downloaded here), e.g.::

    model, variables = cnn_jax.weights.load_torchvision("vgg16", "vgg16.pth")
    layers = deconv_stack(model, variables)
    pixels = cnn_jax.viz.project(layers, images, "pool5", channel=12)

with ``images`` preprocessed as the weights expect (torchvision's ImageNet mean/std).

Other models (LeNet-5's tanh and trainable subsampling, residual connections, a
normalization other than batch norm after a convolution or a parameter-free LRN) are
not conv/ReLU/max-pool stacks: a ``ValueError`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import BatchNorm
from cnn_jax.layers.norm import LocalResponseNorm
from cnn_jax.models import VGG, AlexNet, AlexNetPaper, CNNMnist, LeNet5Modern, ZFNet
from cnn_jax.ops.shapes import receptive_field
from cnn_jax.viz.deconvnet import LRN, Conv, Layer, MaxPool, ReLU

__all__ = ["deconv_stack", "receptive_box"]

Array = Any


def _check_relu(model: nn.Module) -> None:
    act = getattr(model, "act", nn.relu)
    if act not in (nn.relu, jax.nn.relu):
        raise ValueError(
            f"the deconvnet needs ReLU activations; {type(model).__name__}.act is {act!r}"
        )


def _fold(
    kernel: Array, bias: Array | None, bn: Mapping[str, Any], stats: Mapping[str, Any], eps: float
) -> tuple[Array, Array]:
    g = jnp.asarray(bn.get("scale", 1.0)) / jnp.sqrt(jnp.asarray(stats["var"]) + eps)
    b = jnp.zeros(kernel.shape[-1], kernel.dtype) if bias is None else jnp.asarray(bias)
    beta = jnp.asarray(bn.get("bias", 0.0))
    return jnp.asarray(kernel) * g, (b - jnp.asarray(stats["mean"])) * g + beta


def _epsilon(model: nn.Module) -> float:
    norm = model.norm()
    if not isinstance(norm, BatchNorm):
        raise ValueError(
            f"{type(model).__name__}.norm must be cnn_jax.layers.BatchNorm to be folded, "
            f"got {type(norm).__name__}"
        )
    return float(norm.epsilon)


def _vgg(model: VGG, params: Mapping[str, Any], stats: Mapping[str, Any]) -> list[Layer]:
    layers: list[Layer] = []
    index, block, i = 0, 1, 1
    for v in model.cfg:
        if v == "M":
            layers.append(MaxPool(f"pool{block}", 2, 2))
            index, block, i = index + 1, block + 1, 1
            continue
        p = params[f"features_{index}"]
        kernel, bias = p["kernel"], p.get("bias")
        name = f"conv{block}_{i}"
        if model.batch_norm:
            bn = f"features_{index + 1}"
            kernel, bias = _fold(kernel, bias, params[bn], stats[bn], _epsilon(model))
            name = f"bn{block}_{i}"
        layers += [Conv(name, kernel, bias, 1, 1), ReLU(f"relu{block}_{i}")]
        index += 3 if model.batch_norm else 2
        i += 1
    return layers


def _cnn_mnist(model: CNNMnist, params: Mapping[str, Any], stats: Mapping[str, Any]) -> list[Layer]:
    layers: list[Layer] = []
    eps = _epsilon(model)
    for b in range(len(model.widths)):
        for j in range(2):
            p = params[f"conv{b}_{j}"]
            kernel, bias = _fold(
                p["kernel"], p.get("bias"), params[f"bn{b}_{j}"], stats[f"bn{b}_{j}"], eps
            )
            layers += [Conv(f"bn{b}_{j}", kernel, bias, 1, "SAME"), ReLU(f"relu{b}_{j}")]
        layers.append(MaxPool(f"block{b}", 2))
    return layers


def _lenet5_modern(params: Mapping[str, Any]) -> list[Layer]:
    layers: list[Layer] = []
    for conv, relu, pool in (("C1", "c1", "s2"), ("C3", "c3", "s4")):
        p = params[conv]
        layers += [Conv(conv, p["kernel"], p.get("bias"), 1, "VALID"), ReLU(relu), MaxPool(pool, 2)]
    return layers


def _alexnet(model: AlexNet, params: Mapping[str, Any]) -> list[Layer]:
    if model.norm is not None:
        raise ValueError("AlexNet with a `norm` is not a conv/ReLU/max-pool stack")
    layers: list[Layer] = []
    spec = [(0, 4, 2, 1), (3, 1, 2, 2), (6, 1, 1, 0), (8, 1, 1, 0), (10, 1, 1, 5)]
    for i, (index, s, pad, pool) in enumerate(spec, 1):
        p = params[f"features_{index}"]
        layers += [Conv(f"features_{index}", p["kernel"], p.get("bias"), s, pad), ReLU(f"conv{i}")]
        if pool:
            layers.append(MaxPool(f"pool{pool}", 3, 2))
    return layers


def _paper_net(model: ZFNet | AlexNetPaper, params: Mapping[str, Any]) -> list[Layer]:
    norm = None
    if model.norm is not None:
        norm = model.norm()  # an unbound module: its attributes only
        if not isinstance(norm, LocalResponseNorm):
            raise ValueError(
                f"{type(model).__name__}.norm must be LocalResponseNorm (or None) for the "
                f"deconvnet, got {type(norm).__name__}"
            )
    towers = model._towers()
    layers: list[Layer] = []
    for i, (_, _, s, pad, groups, _, order) in enumerate(model._layers(), 1):
        p = params[f"conv{i}"]
        layers += [
            Conv(f"conv{i}/__call__", p["kernel"], p.get("bias"), s, pad, groups),
            ReLU(f"conv{i}"),
        ]
        for step in order:
            if step == "n" and norm is not None:
                layers.append(
                    LRN(
                        f"norm{i}",
                        norm.size,
                        norm.alpha,
                        norm.beta,
                        norm.k,
                        norm.alpha_over_n,
                        towers,
                    )
                )
            elif step in "pP":
                layers.append(MaxPool(f"pool{i}", 3, 2, ceil_mode=step == "P"))
    return layers


def deconv_stack(model: nn.Module, variables: Mapping[str, Any]) -> list[Layer]:
    """The conv/ReLU/max-pool stack of ``model``'s convolutional part (module docstring).

    Args:
      model: a ``VGG``, ``CNNMnist``, ``LeNet5Modern``, ``AlexNet``, ``ZFNet`` or
        ``AlexNetPaper``.
      variables: its variables (``params``, and ``batch_stats`` for batch norm).

    Returns:
      The layers, input to the last pooling (to ``conv5``'s pooling for ZFNet and
      AlexNetPaper).

    Raises:
      ValueError: for another model, an activation other than ReLU, or a batch norm
        without its ``batch_stats``.
    """
    params = variables.get("params", variables)
    stats = variables.get("batch_stats", {}) if isinstance(variables, Mapping) else {}
    if isinstance(model, VGG):
        _check_relu(model)
        if model.batch_norm and not stats:
            raise ValueError("`variables` must hold `batch_stats` to fold VGG's batch norms")
        return _vgg(model, params, stats)
    if isinstance(model, CNNMnist):
        _check_relu(model)
        if not stats:
            raise ValueError("`variables` must hold `batch_stats` to fold CNNMnist's batch norms")
        return _cnn_mnist(model, params, stats)
    if isinstance(model, LeNet5Modern):
        return _lenet5_modern(params)
    if isinstance(model, AlexNet):
        _check_relu(model)
        return _alexnet(model, params)
    if isinstance(model, (ZFNet, AlexNetPaper)):
        _check_relu(model)
        return _paper_net(model, params)
    raise ValueError(
        f"`model` (a {type(model).__name__}) has no deconvnet stack; supported: VGG, "
        "CNNMnist, LeNet5Modern, AlexNet, ZFNet, AlexNetPaper"
    )


def receptive_box(
    layers: list[Layer], layer: str, row: int, col: int, image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The input rectangle unit ``(row, col)`` of ``layer`` sees.

    From ``cnn_jax.ops.shapes.receptive_field`` over the stack up to ``layer``: the
    field of side ``r`` centred at ``start + jump * position``.

    Args:
      layers: the stack.
      layer: the layer's name.
      row: the unit's row in the layer's output.
      col: its column.
      image_size: the input's ``(H, W)`` (for 'SAME' padding).

    Returns:
      ``(top, left, height, width)`` in input pixels; it may reach outside the image
      (negative ``top``/``left`` or past the edge) where there is padding.

    Raises:
      ValueError: for an unknown ``layer``.
    """
    names = [lyr.name for lyr in layers]
    if layer not in names:
        raise ValueError(f"`layer` (={layer!r}) is not a layer of the stack; layers: {names}")
    spec = []
    for lyr in layers[: names.index(layer) + 1]:
        if isinstance(lyr, Conv):
            spec.append(
                dict(kernel=tuple(lyr.kernel.shape[:2]), stride=lyr.strides, padding=lyr.padding)
            )
        elif isinstance(lyr, MaxPool):
            spec.append(
                dict(window=lyr.window, stride=lyr.strides or lyr.window, padding=lyr.padding)
            )
    if not spec:
        return (row, col, 1, 1)
    rf = receptive_field(spec, tuple(image_size))
    box = []
    for pos, size, jump, start in zip((row, col), rf.size, rf.jump, rf.start, strict=True):
        centre = start + jump * pos
        box.append(round(centre - (size - 1) / 2))
    return (box[0], box[1], rf.size[0], rf.size[1])
