"""Activations by name, for configs, and the activation modules with state or structure.

``get_activation('leaky_relu', negative_slope=0.2)`` returns a callable ``x -> y``.
Names (case-insensitive, ``-`` and ``_`` alike; ``activation_names()`` lists them):

* ``relu``, ``relu6`` (MobileNet), ``leaky_relu`` (``negative_slope``, default 0.01),
  ``elu`` (``alpha``, default 1), ``selu``, ``softplus``.
* ``prelu``: the learnable ``PReLU`` module (He et al. 2015); options are its attributes.
  The module must be called inside a parent module (``get_activation`` from a parent's
  ``setup`` or ``@nn.compact`` method), or ``init``/``apply``-ed on its own.
* ``tanh``, ``sigmoid``, ``hard_sigmoid`` (``relu6(x + 3) / 6``, as PyTorch).
* ``gelu``: exact, ``x Φ(x)`` (PyTorch's default; note ``jax.nn.gelu`` defaults to the
  tanh approximation), or ``approximate=True``; ``gelu_tanh`` is the approximation.
* ``swish`` / ``silu``: ``x sigmoid(beta x)`` (``beta``, default 1: SiLU);
  ``hard_swish`` (MobileNetV3).
* ``maxout``: ``num_pieces`` (required) and ``axis`` (default -1): the max over groups of
  ``num_pieces`` consecutive channels (Goodfellow et al. 2013), via ``cnn_jax.ops.maxout``.
* ``gated_tanh``: WaveNet's gated unit, ``tanh(a) * sigmoid(b)`` with ``a``, ``b`` the
  two halves of the channels (``axis``, default -1).
* ``identity`` / ``linear``; ``None`` also gives the identity.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers._checks import check_axis, check_int, check_positive_int, check_real
from cnn_jax.ops import maxout

__all__ = [
    "GatedActivation",
    "Maxout",
    "PReLU",
    "activation_names",
    "gated_activation",
    "gated_tanh",
    "get_activation",
    "identity",
    "prelu",
    "swish",
]

Array = Any
Dtype = Any


def identity(x: Array) -> Array:
    """Returns ``x`` unchanged (the ``'identity'``/``'linear'`` activation)."""
    return x


def swish(x: Array, beta: float = 1.0) -> Array:
    """Swish, ``x * sigmoid(beta * x)`` (Ramachandran et al. 2017); ``beta=1`` is SiLU.

    Args:
      x: input.
      beta: the slope inside the sigmoid.

    Returns:
      ``x * sigmoid(beta * x)``.
    """
    if beta == 1:
        return jax.nn.silu(x)
    return x * jax.nn.sigmoid(beta * x)


def gated_activation(filter: Array, gate: Array) -> Array:
    """WaveNet's gated activation unit, ``tanh(filter) * sigmoid(gate)``.

    (van den Oord et al. 2016, eq. 2: ``z = tanh(W_f * x) ⊙ σ(W_g * x)``.)

    Args:
      filter: the filter pre-activation ``W_f * x``.
      gate: the gate pre-activation ``W_g * x``, broadcastable with ``filter``.

    Returns:
      ``tanh(filter) * sigmoid(gate)``.
    """
    return jnp.tanh(filter) * jax.nn.sigmoid(gate)


def gated_tanh(x: Array, axis: int = -1) -> Array:
    """The gated unit on one tensor: ``tanh(a) * sigmoid(b)``, ``a, b`` the halves of ``x``.

    ``a`` is the first half of ``axis``, ``b`` the second, so one convolution with
    ``2 C`` output channels followed by this equals WaveNet's two convolutions followed
    by ``gated_activation``.

    Args:
      x: input with an even size along ``axis``.
      axis: the channel axis.

    Returns:
      ``x`` with half the channels along ``axis``.

    Raises:
      ValueError: if ``x.shape[axis]`` is odd or ``axis`` out of range.
    """
    ax = check_axis(x, axis)
    if x.shape[ax] % 2:
        raise ValueError(
            f"`x` must have an even number of channels along `axis` (={axis}) to split into "
            f"filter and gate halves, got shape {tuple(x.shape)}"
        )
    a, b = jnp.split(x, 2, axis=ax)
    return gated_activation(a, b)


def prelu(x: Array, negative_slope: Array, axis: int = -1) -> Array:
    """Parametric ReLU, ``x`` where ``x >= 0`` and ``negative_slope * x`` elsewhere.

    Args:
      x: input.
      negative_slope: a scalar (shared) or one slope per channel of ``axis``.
      axis: the channel axis of a per-channel ``negative_slope``.

    Returns:
      ``max(0, x) + negative_slope * min(0, x)``, in the dtype of ``x``.

    Raises:
      ValueError: if ``negative_slope`` is neither a scalar nor ``(x.shape[axis],)``.
    """
    ax = check_axis(x, axis)
    slope = jnp.asarray(negative_slope)
    if slope.size != 1 or slope.ndim > 1:
        if slope.shape != (x.shape[ax],):
            raise ValueError(
                f"`negative_slope` must be a scalar or have shape ({x.shape[ax]},) (the "
                f"channels of `x` {tuple(x.shape)} along axis {axis}), got {slope.shape}"
            )
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 1 - ax))
    else:
        slope = slope.reshape(())
    return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class PReLU(nn.Module):
    """Parametric ReLU (He et al. 2015) with a learnable negative slope.

    ``y = max(0, x) + a * min(0, x)``, with ``a`` the param ``negative_slope``: one per
    channel (the paper's main variant; ``torch.nn.PReLU(num_parameters=C)``) or one for
    all channels with ``channel_shared=True`` (``torch.nn.PReLU()``, PyTorch's default).
    Initialized to 0.25 as in the paper and PyTorch.

    Attributes:
      channel_shared: learn one slope for all channels instead of one per channel.
      negative_slope_init: the initial slope.
      axis: the channel axis.
      param_dtype: the slope's dtype.
    """

    channel_shared: bool = False
    negative_slope_init: float = 0.25
    axis: int = -1
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Applies the PReLU.

        Args:
          x: input (channels along ``axis``).

        Returns:
          The activation, in the dtype of ``x``.
        """
        ax = check_axis(x, self.axis)
        shape = () if self.channel_shared else (x.shape[ax],)
        slope = self.param(
            "negative_slope",
            lambda _, s, d: jnp.full(s, self.negative_slope_init, d),
            shape,
            self.param_dtype,
        )
        return prelu(x, slope, axis=self.axis)


class Maxout(nn.Module):
    """Maxout over groups of ``num_pieces`` consecutive channels (Goodfellow et al. 2013).

    Parameter-free: the linear pieces come from the preceding layer, which must output
    ``num_pieces`` times the wanted channels.

    Attributes:
      num_pieces: the pieces per output unit.
      axis: the channel axis.
    """

    num_pieces: int
    axis: int = -1

    def __post_init__(self) -> None:
        check_positive_int(self.num_pieces, "num_pieces")
        super().__post_init__()

    def __call__(self, x: Array) -> Array:
        """Applies ``maxout``.

        Args:
          x: input, ``x.shape[axis]`` a multiple of ``num_pieces``.

        Returns:
          ``x`` with ``x.shape[axis] // num_pieces`` channels along ``axis``.
        """
        return maxout(x, self.num_pieces, axis=self.axis)


class GatedActivation(nn.Module):
    """WaveNet's gated unit on one tensor: ``tanh(first half) * sigmoid(second half)``.

    See ``gated_tanh``; parameter-free.

    Attributes:
      axis: the channel axis.
    """

    axis: int = -1

    def __call__(self, x: Array) -> Array:
        """Applies ``gated_tanh``.

        Args:
          x: input with an even number of channels along ``axis``.

        Returns:
          ``x`` with half the channels along ``axis``.
        """
        return gated_tanh(x, axis=self.axis)


# Factories: keyword options -> activation. Their signatures are the accepted options.


def _fixed(fn: Callable[[Array], Array]) -> Callable[[], Callable[[Array], Array]]:
    def make() -> Callable[[Array], Array]:
        return fn

    return make


def _leaky_relu(negative_slope: float = 0.01) -> Callable[[Array], Array]:
    s = check_real(negative_slope, "negative_slope")
    return functools.partial(jax.nn.leaky_relu, negative_slope=s)


def _elu(alpha: float = 1.0) -> Callable[[Array], Array]:
    return functools.partial(jax.nn.elu, alpha=check_real(alpha, "alpha"))


def _gelu(approximate: bool = False) -> Callable[[Array], Array]:
    if not isinstance(approximate, bool):
        raise TypeError(f"`approximate` must be a bool, got {approximate!r}")
    return functools.partial(jax.nn.gelu, approximate=approximate)


def _swish(beta: float = 1.0) -> Callable[[Array], Array]:
    b = check_real(beta, "beta")
    return jax.nn.silu if b == 1 else functools.partial(swish, beta=b)


def _maxout(num_pieces: int, axis: int = -1) -> Callable[[Array], Array]:
    n = check_positive_int(num_pieces, "num_pieces")
    return functools.partial(maxout, num_pieces=n, axis=check_int(axis, "axis"))


def _gated_tanh(axis: int = -1) -> Callable[[Array], Array]:
    return functools.partial(gated_tanh, axis=check_int(axis, "axis"))


def _prelu(
    channel_shared: bool = False,
    negative_slope_init: float = 0.25,
    axis: int = -1,
    param_dtype: Dtype = jnp.float32,
    name: str | None = None,
) -> PReLU:
    return PReLU(
        channel_shared=channel_shared,
        negative_slope_init=check_real(negative_slope_init, "negative_slope_init"),
        axis=axis,
        param_dtype=param_dtype,
        name=name,
    )


_FACTORIES: dict[str, Callable[..., Callable[[Array], Array]]] = {
    "elu": _elu,
    "gated_tanh": _gated_tanh,
    "gelu": _gelu,
    "gelu_tanh": _fixed(functools.partial(jax.nn.gelu, approximate=True)),
    "hard_sigmoid": _fixed(jax.nn.hard_sigmoid),
    "hard_swish": _fixed(jax.nn.hard_swish),
    "identity": _fixed(identity),
    "leaky_relu": _leaky_relu,
    "maxout": _maxout,
    "prelu": _prelu,
    "relu": _fixed(jax.nn.relu),
    "relu6": _fixed(jax.nn.relu6),
    "selu": _fixed(jax.nn.selu),
    "sigmoid": _fixed(jax.nn.sigmoid),
    "softplus": _fixed(jax.nn.softplus),
    "swish": _swish,
    "tanh": _fixed(jnp.tanh),
}
_ALIASES = {
    "linear": "identity",
    "silu": "swish",
    "hardswish": "hard_swish",
    "hardsigmoid": "hard_sigmoid",
    "lrelu": "leaky_relu",
}


def activation_names() -> list[str]:
    """Returns the names ``get_activation`` accepts (aliases included), sorted."""
    return sorted([*_FACTORIES, *_ALIASES])


def get_activation(
    activation: str | Callable[[Array], Array] | None, **kwargs: Any
) -> Callable[[Array], Array]:
    """Returns an activation ``x -> y`` from a name, a callable or ``None``.

    Args:
      activation: a name from ``activation_names()`` (case-insensitive, ``-`` read as
        ``_``), a callable (returned unchanged) or ``None`` (the identity).
      **kwargs: options of the named activation: ``negative_slope`` (leaky_relu),
        ``alpha`` (elu), ``approximate`` (gelu), ``beta`` (swish), ``num_pieces`` and
        ``axis`` (maxout), ``axis`` (gated_tanh), ``PReLU``'s attributes (prelu).

    Returns:
      The activation; for ``'prelu'`` a ``PReLU`` module (learnable).

    Raises:
      ValueError: for an unknown name (the message lists the known ones) or an invalid
        option value.
      TypeError: for options the activation does not take, a missing required option
        (``num_pieces`` of maxout), options given with a callable or ``None``, or an
        ``activation`` that is neither a name, a callable nor ``None``.
    """
    if activation is None or callable(activation):
        if kwargs:
            raise TypeError(
                f"options {sorted(kwargs)} can only be given with an activation name, not "
                f"with {activation!r}"
            )
        return identity if activation is None else activation
    if not isinstance(activation, str):
        raise TypeError(
            f"`activation` must be a name, a callable or None, got {type(activation).__name__}"
        )
    key = activation.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _FACTORIES:
        raise ValueError(
            f"unknown activation {activation!r}; known: {', '.join(activation_names())}"
        )
    factory = _FACTORIES[key]
    signature = inspect.signature(factory)
    try:
        signature.bind(**kwargs)
    except TypeError as e:
        accepted = ", ".join(f"`{p}`" for p in signature.parameters) or "no options"
        raise TypeError(
            f"activation {activation!r} got options {sorted(kwargs)} ({e}); it accepts: {accepted}"
        ) from None
    return factory(**kwargs)
