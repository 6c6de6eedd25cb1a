"""Deconvnet projections (Zeiler & Fergus 2014) of conv/ReLU/max-pool stacks.

"Visualizing and Understanding Convolutional Networks" (ECCV 2014, arXiv:1311.2901),
section 2.1: to see what excites one activation, every other activation of its layer
is set to zero and the layer is passed down an attached deconvnet, which undoes each
layer below in turn:

* max pooling by *unpooling*: each value goes back to the position its window's
  maximum came from (the *switches* recorded on the way up,
  ``cnn_jax.ops.max_pool_with_indices``), zeros elsewhere (``cnn_jax.ops.max_unpool``);
  with overlapping windows (AlexNet's and ZFNet's 3x3, stride 2) a cell that is the
  maximum of two windows gets the sum of both values, the transpose of the pooling's
  selection (``max_unpool`` would keep one);
* a ReLU by a ReLU (the reconstruction is rectified, whatever the forward mask was);
* a convolution by the convolution with the *transposed* filters (each filter flipped
  in space and its input and output channels swapped: the adjoint of the convolution
  with the same strides and padding, computed exactly by ``jax.linear_transpose``);
  biases are not used on the way down;
* a local response (contrast) normalization is passed through unchanged: the paper's
  deconvnet does not invert it (:class:`LRN`, for ZFNet and AlexNet as published).

A network is a sequence of :class:`Conv`, :class:`ReLU`, :class:`MaxPool` and :class:`LRN`
layers, each with a name (``cnn_jax.viz.stacks`` builds them from cnn_jax models and their
trained variables). :func:`forward` runs it and records the switches; :func:`project` picks an
activation and projects it to pixel space. The layers are pytrees (their arrays are
leaves, their geometry static), so both functions can be jitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from cnn_jax import ops
from cnn_jax.layers.norm import local_response_norm
from cnn_jax.ops._validate import as_tuple
from cnn_jax.ops.padding import resolve_padding

__all__ = ["LRN", "Conv", "Layer", "MaxPool", "ReLU", "Trace", "forward", "project", "select"]

Array = Any
Keep = Literal["max", "map"]


@struct.dataclass
class Conv:
    """A convolution ``ops.conv(x, kernel, bias, strides=..., padding=..., groups=...)``.

    Attributes:
      name: the layer's name (its output's name).
      kernel: ``(kh, kw, C_in / groups, C_out)`` weights.
      bias: ``(C_out,)`` or None.
      strides: int or a pair.
      padding: any padding of ``cnn_jax.ops.padding``.
      groups: channel groups (AlexNet's two towers: 2).
    """

    name: str = struct.field(pytree_node=False)
    kernel: Array
    bias: Array | None = None
    strides: Any = struct.field(pytree_node=False, default=1)
    padding: Any = struct.field(pytree_node=False, default="VALID")
    groups: int = struct.field(pytree_node=False, default=1)

    def __call__(self, x: Array) -> Array:
        """The convolution of ``x``."""
        return ops.conv(
            x,
            self.kernel,
            self.bias,
            strides=self.strides,
            padding=self.padding,
            groups=self.groups,
        )

    def transpose(self, y: Array, x_shape: tuple[int, ...]) -> Array:
        """The transposed filters applied to ``y``: the adjoint of the unbiased convolution."""
        k = tuple(self.kernel.shape[:-2])
        strides = as_tuple(self.strides, len(k), "strides")
        pads = resolve_padding(self.padding, x_shape[1:-1], k, strides, (1,) * len(k))

        def linear(x: Array) -> Array:
            return lax.conv_general_dilated(
                x,
                self.kernel.astype(y.dtype),
                strides,
                [tuple(p) for p in pads],
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=self.groups,
                precision=lax.Precision.HIGHEST,
            )

        spec = jax.ShapeDtypeStruct(x_shape, y.dtype)
        (out,) = jax.linear_transpose(linear, spec)(y)
        return out


@struct.dataclass
class ReLU:
    """``max(x, 0)``; rectifies the reconstruction on the way down."""

    name: str = struct.field(pytree_node=False)

    def __call__(self, x: Array) -> Array:
        """``max(x, 0)``."""
        return jax.nn.relu(x)


@struct.dataclass
class MaxPool:
    """Max pooling whose switches (the arg-max of each window) are recorded.

    Attributes:
      name: the layer's name.
      window: int or a pair.
      strides: int, a pair or None (= ``window``).
      padding: any padding of ``cnn_jax.ops.padding``.
      ceil_mode: PyTorch's ``ceil_mode``.
    """

    name: str = struct.field(pytree_node=False)
    window: Any = struct.field(pytree_node=False, default=2)
    strides: Any = struct.field(pytree_node=False, default=None)
    padding: Any = struct.field(pytree_node=False, default="VALID")
    ceil_mode: bool = struct.field(pytree_node=False, default=False)

    def __call__(self, x: Array) -> tuple[Array, Array]:
        """``(pooled, switches)``."""
        return ops.max_pool_with_indices(
            x, self.window, self.strides, self.padding, ceil_mode=self.ceil_mode
        )


@struct.dataclass
class LRN:
    """Local response normalization (``cnn_jax.layers.local_response_norm``) per tower.

    On the way down the deconvnet passes the signal through unchanged, as Zeiler &
    Fergus' did for their contrast normalization layers.

    Attributes:
      name: the layer's name.
      size: channels in the window.
      alpha: scale of the sum of squares.
      beta: exponent.
      k: additive constant.
      alpha_over_n: ``alpha / size`` (PyTorch, Caffe) instead of ``alpha`` (paper).
      towers: normalize within this many equal channel groups (AlexNet's two GPUs).
    """

    name: str = struct.field(pytree_node=False)
    size: int = struct.field(pytree_node=False, default=5)
    alpha: float = struct.field(pytree_node=False, default=1e-4)
    beta: float = struct.field(pytree_node=False, default=0.75)
    k: float = struct.field(pytree_node=False, default=2.0)
    alpha_over_n: bool = struct.field(pytree_node=False, default=False)
    towers: int = struct.field(pytree_node=False, default=1)

    def __call__(self, x: Array) -> Array:
        """The normalized ``x``."""
        parts = jnp.split(x, self.towers, axis=-1)
        out = [
            local_response_norm(
                t, self.size, self.alpha, self.beta, self.k, alpha_over_n=self.alpha_over_n
            )
            for t in parts
        ]
        return out[0] if len(out) == 1 else jnp.concatenate(out, axis=-1)


Layer = Conv | ReLU | MaxPool | LRN


@struct.dataclass
class Trace:
    """What :func:`forward` records.

    Attributes:
      inputs: each layer's input, in order (``inputs[0]`` is the image batch).
      outputs: each layer's output, in order.
      switches: for each :class:`MaxPool`, its arg-max indices; None for other layers.
      names: the layers' names.
    """

    inputs: tuple[Array, ...]
    outputs: tuple[Array, ...]
    switches: tuple[Array | None, ...]
    names: tuple[str, ...] = struct.field(pytree_node=False)

    def __getitem__(self, name: str) -> Array:
        """The output of the layer named ``name``."""
        return self.outputs[_index(self.names, name)]


def _check_layers(layers: Sequence[Layer]) -> tuple[Layer, ...]:
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise TypeError(
            f"`layers` (={layers!r}) must be a non-empty sequence of Conv/ReLU/MaxPool/LRN"
        )
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Conv, ReLU, MaxPool, LRN)):
            raise TypeError(f"`layers[{i}]` (={layer!r}) must be a Conv, ReLU, MaxPool or LRN")
    names = [layer.name for layer in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"`layers` names must be unique; repeated: {dup}")
    return tuple(layers)


def _index(names: Sequence[str], name: str) -> int:
    if name not in names:
        raise ValueError(f"`layer` (={name!r}) is not a layer of the stack; layers: {list(names)}")
    return list(names).index(name)


def forward(layers: Sequence[Layer], x: Array, upto: str | None = None) -> Trace:
    """Runs the stack on ``x``, recording every output and the pooling switches.

    Args:
      layers: the stack.
      x: ``(N, H, W, C)`` images.
      upto: stop after this layer (default: run them all).

    Returns:
      The :class:`Trace`.

    Raises:
      TypeError: for a bad ``layers``.
      ValueError: for an unknown ``upto`` or a ``x`` that is not ``(N, H, W, C)``.
    """
    layers = _check_layers(layers)
    names = tuple(layer.name for layer in layers)
    stop = _index(names, upto) if upto is not None else len(layers) - 1
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"`x` must be (N, H, W, C) images, got shape {tuple(x.shape)}")
    inputs, outputs, switches = [], [], []
    h = x
    for layer in layers[: stop + 1]:
        inputs.append(h)
        if isinstance(layer, MaxPool):
            h, idx = layer(h)
        else:
            h, idx = layer(h), None
        outputs.append(h)
        switches.append(idx)
    return Trace(tuple(inputs), tuple(outputs), tuple(switches), names[: stop + 1])


def select(activation: Array, channel: int, keep: Keep = "max") -> Array:
    """The signal a projection starts from: one channel of ``activation``, the rest zero.

    Args:
      activation: ``(N, H, W, C)``.
      channel: the feature map to keep.
      keep: ``'max'`` keeps only the strongest activation of that map in each image
        (the paper's figures; the first in row-major order on ties); ``'map'`` keeps the
        whole map.

    Returns:
      An array like ``activation``.

    Raises:
      ValueError: for a ``channel`` out of range or an unknown ``keep``.
    """
    c = activation.shape[-1]
    if (
        not isinstance(channel, (int, np.integer))
        or isinstance(channel, bool)
        or not 0 <= channel < c
    ):
        raise ValueError(f"`channel` (={channel!r}) must be an int in [0, {c})")
    if keep not in ("max", "map"):
        raise ValueError(f"`keep` (={keep!r}) must be 'max' or 'map'")
    fmap = activation[..., channel]
    if keep == "max":
        flat = fmap.reshape(fmap.shape[0], -1)
        onehot = jax.nn.one_hot(jnp.argmax(flat, axis=1), flat.shape[1], dtype=fmap.dtype)
        fmap = (flat * onehot).reshape(fmap.shape)
    mask = jax.nn.one_hot(channel, c, dtype=activation.dtype)
    return fmap[..., None] * mask


def project(
    layers: Sequence[Layer],
    x: Array,
    layer: str,
    channel: int | None = None,
    *,
    keep: Keep = "max",
    signal: Array | None = None,
) -> Array:
    """Projects an activation of ``layer`` down to pixel space (the module docstring).

    Args:
      layers: the stack.
      x: ``(N, H, W, C)`` images.
      layer: the name of the layer whose output is projected.
      channel: the feature map (see :func:`select`); not used with ``signal``.
      keep: ``'max'`` or ``'map'`` (see :func:`select`).
      signal: instead of ``channel``, the exact array (shaped like the layer's output)
        to project.

    Returns:
      The reconstruction, shaped like ``x``.

    Raises:
      ValueError: for an unknown ``layer``, neither or both of ``channel`` and
        ``signal``, or a ``signal`` of the wrong shape.
    """
    trace = forward(layers, x, upto=layer)
    out = trace.outputs[-1]
    if (channel is None) == (signal is None):
        raise ValueError(
            f"give exactly one of `channel` (={channel!r}) and `signal` "
            f"(={'None' if signal is None else 'an array'})"
        )
    if signal is None:
        h = select(out, channel, keep)
    else:
        h = jnp.asarray(signal, out.dtype)
        if h.shape != out.shape:
            raise ValueError(
                f"`signal` shape {tuple(h.shape)} must be the output shape of {layer!r}, "
                f"{tuple(out.shape)}"
            )
    return backward(layers, trace, h)


def backward(layers: Sequence[Layer], trace: Trace, signal: Array) -> Array:
    """The deconvnet pass from the last layer of ``trace`` down to its input.

    Args:
      layers: the stack ``trace`` was recorded on.
      trace: from :func:`forward`.
      signal: shaped like the trace's last output.

    Returns:
      The reconstruction, shaped like the input of the trace.
    """
    h = signal
    for i in range(len(trace.outputs) - 1, -1, -1):
        lyr, x_in = layers[i], trace.inputs[i]
        if isinstance(lyr, MaxPool):
            h = _unpool(lyr, h, trace.switches[i], x_in.shape[1:-1])
        elif isinstance(lyr, ReLU):
            h = jax.nn.relu(h)
        elif isinstance(lyr, LRN):
            pass  # not inverted: passed through (Zeiler & Fergus)
        else:
            h = lyr.transpose(h, x_in.shape)
    return h


def _unpool(pool: MaxPool, values: Array, switches: Array, spatial: tuple[int, ...]) -> Array:
    """Values back at their switches; overlapping windows that share one add up."""
    n = len(spatial)
    window = as_tuple(pool.window, n, "window")
    strides = window if pool.strides is None else as_tuple(pool.strides, n, "strides")
    if all(s >= w for s, w in zip(strides, window, strict=True)):  # one window per cell
        return ops.max_unpool(values, switches, spatial)
    batch, chans = values.shape[0], values.shape[-1]
    size = math.prod(spatial)
    idx = switches.reshape(batch, -1, chans)
    b = jnp.arange(batch).reshape(batch, 1, 1)
    c = jnp.arange(chans).reshape(1, 1, chans)
    out = jnp.zeros((batch, size, chans), values.dtype)
    out = out.at[b, idx, c].add(values.reshape(batch, -1, chans))
    return out.reshape(batch, *spatial, chans)
