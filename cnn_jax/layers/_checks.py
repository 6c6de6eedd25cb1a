"""Argument checks and initializer resolution shared by the layers (not public).

Every check raises a ``TypeError`` for a value of the wrong type and a ``ValueError``
for one out of range, naming the argument and the value it got.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from cnn_jax.layers.initializers import Initializer, get_initializer
from cnn_jax.ops._validate import check_array_rank, is_int

Array = Any
IntOrSeq = int | Sequence[int]
InitLike = str | Initializer


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real Python/numpy number (``bool`` excluded)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(value: Any, name: str) -> float:
    """Returns ``value`` as a float.

    Raises:
      TypeError: if ``value`` is not a real number.
    """
    if not is_real(value):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    return float(value)


def check_int(value: Any, name: str) -> int:
    """Returns ``value`` as an int.

    Raises:
      TypeError: if ``value`` is not an int (``bool`` excluded).
    """
    if not is_int(value):
        raise TypeError(f"`{name}` must be an int, got {value!r}")
    return int(value)


def check_positive_int(value: Any, name: str) -> int:
    """Returns ``value`` as an int ``>= 1``.

    Raises:
      TypeError: if ``value`` is not an int.
      ValueError: if it is smaller than 1.
    """
    value = check_int(value, name)
    if value < 1:
        raise ValueError(f"`{name}` (={value}) must be positive")
    return value


def check_axis(x: Array, axis: Any, name: str = "x") -> int:
    """Returns ``axis`` as a non-negative axis of the array ``x``.

    Raises:
      TypeError: if ``x`` is not an array or ``axis`` not an int.
      ValueError: if ``axis`` is out of range for ``x``'s rank.
    """
    check_array_rank(x, name, None, "")
    axis = check_int(axis, "axis")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"`axis` (={axis}) is out of range for `{name}` of rank {x.ndim}")
    return axis % x.ndim


def check_channels_last(x: Any, name: str = "x") -> None:
    """Checks that ``x`` is an array ``(N, ..., C)`` of rank >= 2.

    Raises:
      TypeError: if ``x`` is not an array.
      ValueError: if its rank is below 2.
    """
    check_array_rank(x, name, None, "")
    if x.ndim < 2:
        raise ValueError(
            f"`{name}` must have shape (N, ..., C) with rank >= 2 (channels last), "
            f"got shape {tuple(x.shape)}"
        )


def spatial_rank(x: Array, module: str) -> int:
    """The number of spatial dimensions of a ``(N, *spatial, C)`` input (at least 1).

    Raises:
      ValueError: if ``x`` is not an array of rank >= 3.
    """
    if not hasattr(x, "ndim") or x.ndim < 3:
        shape = getattr(x, "shape", None)
        raise ValueError(f"{module} expects inputs of shape (N, *spatial, C), got shape {shape}")
    return x.ndim - 2


def resolve_init(init: InitLike, name: str, fan_in: int) -> Initializer:
    """Resolves an initializer or its name; errors name the attribute ``name``.

    ``'torch_default'`` given as a ``*bias_init`` becomes PyTorch's bias default, which
    needs the weight's ``fan_in``.
    """
    if (
        isinstance(init, str)
        and init.lower() in ("torch_default", "torch_default_bias")
        and name.endswith("bias_init")
    ):
        return get_initializer("torch_default_bias", fan_in=fan_in)
    try:
        return get_initializer(init)
    except (TypeError, ValueError) as e:
        raise type(e)(f"`{name}`: {e}") from None


def bias_param(module: Any, shape: Sequence[int], fan_in: int) -> Array | None:
    """A layer's ``bias`` param from its ``use_bias``, ``bias_init``, ``param_dtype``.

    Args:
      module: the layer (inside its ``@nn.compact`` method).
      shape: the bias shape.
      fan_in: the kernel's fan-in (for ``'torch_default'``).

    Returns:
      The param, or ``None`` when ``module.use_bias`` is false.
    """
    if not module.use_bias:
        return None
    init = resolve_init(module.bias_init, "bias_init", fan_in)
    return module.param("bias", init, tuple(shape), module.param_dtype)
