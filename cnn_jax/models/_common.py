"""What the model families share (not public): argument checks, initializers, norms.

Every model checks its attributes when it is constructed (``__post_init__``) and its
input when it is called, with the checks here: each raises a ``ValueError`` that names
the argument and the value it got (a wrong type is a ``ValueError`` too, so that a
model's one contract is "a bad argument raises ``ValueError``").

The initializers and normalizations reproduce the frameworks whose layouts and weights
the models follow: torchvision (PyTorch) and ``keras.applications``.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import BatchNorm
from cnn_jax.layers.initializers import Initializer, get_initializer
from cnn_jax.ops._validate import is_int

__all__ = [
    "TORCH_CONV_INIT_FAN_IN",
    "TORCH_CONV_INIT_FAN_OUT",
    "Array",
    "KerasBatchNorm",
    "KerasResNetBatchNorm",
    "ModuleDef",
    "TorchInceptionBatchNorm",
    "check_choice",
    "check_images",
    "check_positive_int",
    "check_positive_ints",
    "check_rate",
    "torch_dense",
    "torch_linear",
    "torch_trunc_normal",
]

Array = Any
ModuleDef = Callable[..., nn.Module]

# --- argument checks ------------------------------------------------------------------


def check_images(x: Any, model: str, min_size: int = 1) -> tuple[int, int, int, int]:
    """Checks that ``x`` is a batch of images ``(N, H, W, C)`` with ``H, W >= min_size``.

    Args:
      x: the model's input.
      model: the model's name, for the message.
      min_size: the smallest height and width the model accepts.

    Returns:
      The shape of ``x``.

    Raises:
      ValueError: naming ``x`` and its shape (or its value, if it has no shape).
    """
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        got = f"shape {tuple(shape)}" if shape is not None else repr(x)
        raise ValueError(f"{model} expects `x` of shape (N, H, W, C), got {got}")
    shape = tuple(int(d) for d in shape)
    if min(shape[1:3]) < min_size:
        raise ValueError(
            f"{model} needs `x` of at least {min_size}x{min_size} pixels, got shape {shape}"
        )
    return shape  # type: ignore[return-value]


def check_positive_int(value: Any, name: str) -> int:
    """Returns ``value`` as an int ``>= 1``.

    Raises:
      ValueError: naming ``name`` and ``value`` if it is not a positive int (``bool``
        excluded).
    """
    if not is_int(value) or value < 1:
        raise ValueError(f"`{name}` (={value!r}) must be a positive int")
    return int(value)


def check_positive_ints(value: Any, name: str) -> tuple[int, ...]:
    """Returns ``value``, a non-empty sequence of positive ints, as a tuple.

    Raises:
      ValueError: naming ``name`` and ``value`` otherwise.
    """
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not value
        or not all(is_int(v) and v >= 1 for v in value)
    ):
        raise ValueError(f"`{name}` (={value!r}) must be a non-empty sequence of positive ints")
    return tuple(int(v) for v in value)


def check_rate(value: Any, name: str) -> float:
    """Returns a dropout rate in ``[0, 1)`` as a float.

    Raises:
      ValueError: naming ``name`` and ``value`` if it is not a real number in ``[0, 1)``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"`{name}` (={value!r}) must be a dropout rate in [0, 1)")
    return float(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``.

    Raises:
      ValueError: naming ``name``, ``value`` and the choices otherwise.
    """
    if value not in choices:
        raise ValueError(f"`{name}` (={value!r}) must be one of {list(choices)}")
    return value


# --- initializers ---------------------------------------------------------------------

#: torchvision's ResNet and VGG convolution init:
#: ``kaiming_normal_(mode='fan_out', nonlinearity='relu')``, std ``sqrt(2 / fan_out)``.
TORCH_CONV_INIT_FAN_OUT = get_initializer("he_normal", mode="fan_out", distribution="normal")

#: torchvision's DenseNet convolution init: ``kaiming_normal_`` with its defaults
#: (``mode='fan_in'``, gain ``sqrt(2)``), std ``sqrt(2 / fan_in)``.
TORCH_CONV_INIT_FAN_IN = get_initializer("he_normal", mode="fan_in", distribution="normal")


def torch_trunc_normal(stddev: float, a: float = -2.0, b: float = 2.0) -> Initializer:
    """PyTorch's ``trunc_normal_(std=stddev, a=a, b=b)``: bounds in absolute values.

    A normal ``N(0, stddev^2)`` truncated to ``[a, b]`` (not ``[a * stddev, b * stddev]``
    as flax's ``truncated_normal``), as torchvision's GoogLeNet and Inception v3 use it.

    Args:
      stddev: standard deviation of the untruncated normal, positive.
      a: lower bound.
      b: upper bound, above ``a``.

    Returns:
      An initializer ``(key, shape, dtype) -> array``.

    Raises:
      ValueError: for a non-positive ``stddev`` or ``a >= b``.
    """
    if not stddev > 0:
        raise ValueError(f"`stddev` (={stddev!r}) must be positive")
    if not a < b:
        raise ValueError(f"`a` (={a!r}) must be below `b` (={b!r})")

    lo, hi = a / stddev, b / stddev

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        if min(-lo, hi) >= 10.0:
            # Bounds 10+ standard deviations out (torchvision's [-2, 2] at std <= 0.1):
            # a draw beyond them has probability < 1e-23, so a clipped normal is the same
            # distribution, and much cheaper to compile than `truncated_normal`.
            z = jnp.clip(jax.random.normal(key, shape, jnp.float32), lo, hi)
        else:
            z = jax.random.truncated_normal(key, lo, hi, shape, jnp.float32)
        return (stddev * z).astype(dtype)

    return init


def torch_linear(features: int, fan_in: int, dtype: Any = None, **kwargs: Any) -> nn.Dense:
    """``nn.Dense`` initialized as PyTorch's ``nn.Linear`` (``U(+-1/sqrt(fan_in))``).

    Args:
      features: output units.
      fan_in: input units (for the bias bound).
      dtype: computation dtype.
      **kwargs: other ``nn.Dense`` arguments (``name``, ``bias_init``, ...).

    Returns:
      The (unbound) ``nn.Dense`` module.
    """
    kwargs.setdefault("bias_init", get_initializer("torch_default_bias", fan_in=fan_in))
    return nn.Dense(features, kernel_init=get_initializer("torch_default"), dtype=dtype, **kwargs)


def torch_dense(
    features: int, fan_in: int, stddev: float, dtype: Any = None, name: str | None = None
) -> nn.Dense:
    """A ``Linear`` as torchvision's Inception models initialize it.

    Weights ``torch_trunc_normal(stddev)``, biases PyTorch's default.

    Args:
      features: output units.
      fan_in: input units (for PyTorch's default bias bound ``1/sqrt(fan_in)``).
      stddev: standard deviation of the truncated-normal weights.
      dtype: computation dtype.
      name: module name.

    Returns:
      The (unbound) ``nn.Dense``.
    """
    return nn.Dense(
        features,
        kernel_init=torch_trunc_normal(stddev),
        bias_init=get_initializer("torch_default_bias", fan_in=fan_in),
        dtype=dtype,
        name=name,
    )


# --- normalizations -------------------------------------------------------------------
# ``BatchNorm``'s own defaults are PyTorch's (momentum 0.1 in PyTorch's convention, 0.9
# in ours; epsilon 1e-5; unbiased running variance).

#: torchvision's ``BasicConv2d`` batch norm (GoogLeNet, Inception v3): epsilon 1e-3.
TorchInceptionBatchNorm = functools.partial(BatchNorm, epsilon=1e-3)

#: Keras' ``BatchNormalization`` defaults: momentum 0.99, epsilon 1e-3, biased running
#: variance (``keras.applications.Xception``).
KerasBatchNorm = functools.partial(
    BatchNorm, momentum=0.99, epsilon=1e-3, unbiased_running_var=False
)

#: Keras' batch norm as ``keras.applications``' ResNets set it: epsilon 1.001e-5.
KerasResNetBatchNorm = functools.partial(
    BatchNorm, momentum=0.99, epsilon=1.001e-5, unbiased_running_var=False
)
