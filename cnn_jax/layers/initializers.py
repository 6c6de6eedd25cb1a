"""Initializers by name, for configs: ``get_initializer('he_normal', mode='fan_out')``.

Kernels are channels-last, ``(*window, C_in / groups, C_out)``: fan-in is
``prod(window) * C_in / groups`` and fan-out ``prod(window) * C_out`` (the convention of
Flax, Keras and PyTorch alike).

Names:

* ``he_normal`` / ``he_uniform`` (aliases ``kaiming_*``): variance ``2 / fan`` (He et al.
  2015); ``mode`` ``'fan_in'`` (default) or ``'fan_out'``; ``he_normal`` draws from a
  truncated normal like Keras, ``distribution='normal'`` gives PyTorch's plain normal.
* ``lecun_normal`` / ``lecun_uniform``: variance ``1 / fan_in`` (LeCun et al. 1998).
* ``glorot_normal`` / ``glorot_uniform`` (aliases ``xavier_*``): variance
  ``2 / (fan_in + fan_out)`` (Glorot & Bengio 2010).
* ``small_random`` / ``normal``: a zero-mean normal with a given ``stddev`` (default 0.01,
  as in AlexNet and the early literature).
* ``uniform``: ``U(-scale, scale)``.
* ``zeros``, ``ones``, ``constant`` (``value``), ``orthogonal`` (``scale``).
* ``identity``: the convolution that copies its input (Yu & Koltun 2016's identity
  initialization of the context module; PyTorch's ``dirac_``): the kernel's centre tap
  (``(k - 1) // 2``, matching 'SAME' padding) maps input channel ``o mod C_in_per_group``
  of each group to output ``o``.
* ``lecun1998_uniform``: ``U(-2.4 / fan_in, 2.4 / fan_in)``, the initialization of
  LeNet-5 (LeCun et al. 1998, appendix A).
* ``torch_default``: PyTorch's default for ``nn.Conv*d``/``nn.Linear`` weights,
  ``kaiming_uniform_(a=sqrt(5))`` = ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``;
  ``torch_default_bias`` (needs ``fan_in``) the matching bias init.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]

__all__ = ["Initializer", "get_initializer", "identity", "initializer_names"]


def _check_mode(mode: str) -> str:
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"`mode` (={mode!r}) must be 'fan_in', 'fan_out' or 'fan_avg'")
    return mode


def _variance_scaling(
    scale: float, default_mode: str, distribution: str
) -> Callable[..., Initializer]:
    def make(mode: str = default_mode, distribution: str = distribution) -> Initializer:
        if distribution not in ("truncated_normal", "normal", "uniform"):
            raise ValueError(
                f"`distribution` (={distribution!r}) must be 'truncated_normal', "
                "'normal' or 'uniform'"
            )
        return jax.nn.initializers.variance_scaling(scale, _check_mode(mode), distribution)

    return make


def identity(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Identity ("Dirac") kernel: a convolution with it copies its input.

    Args:
      key: unused (the initializer is deterministic); kept for the initializer API.
      shape: ``(*window, C_in / groups, C_out)``.
      dtype: the result's dtype.

    Returns:
      A kernel with one 1 per output channel, at the centre tap ``(k - 1) // 2``.

    Raises:
      ValueError: if ``shape`` has rank < 2.
    """
    del key
    if len(shape) < 2:
        raise ValueError(f"`identity` needs a kernel shape (*window, C_in, C_out), got {shape}")
    *window, c_in, c_out = shape
    kernel = np.zeros(shape, np.float32)
    centre = tuple((k - 1) // 2 for k in window)
    for o in range(c_out):
        kernel[(*centre, o % c_in, o)] = 1.0
    return jnp.asarray(kernel, dtype)


def _fan_in(shape: Sequence[int]) -> int:
    return int(np.prod(shape[:-1])) if len(shape) > 1 else int(shape[0])


def _torch_default() -> Initializer:
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        bound = 1.0 / math.sqrt(_fan_in(shape))
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _lecun1998_uniform() -> Initializer:
    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        bound = 2.4 / _fan_in(shape)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _torch_default_bias(fan_in: int | None = None) -> Initializer:
    if fan_in is None or fan_in < 1:
        raise ValueError(f"'torch_default_bias' needs the weight's `fan_in` (>= 1), got {fan_in!r}")

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        bound = 1.0 / math.sqrt(fan_in)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _normal(stddev: float = 0.01) -> Initializer:
    if not stddev > 0:
        raise ValueError(f"`stddev` (={stddev!r}) must be positive")
    return jax.nn.initializers.normal(stddev)


def _uniform(scale: float = 0.05) -> Initializer:
    if not scale > 0:
        raise ValueError(f"`scale` (={scale!r}) must be positive")

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


_FACTORIES: dict[str, Callable[..., Initializer]] = {
    "he_normal": _variance_scaling(2.0, "fan_in", "truncated_normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "truncated_normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "glorot_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "small_random": _normal,
    "normal": _normal,
    "uniform": _uniform,
    "zeros": lambda: jax.nn.initializers.zeros,
    "ones": lambda: jax.nn.initializers.ones,
    "constant": lambda value=0.0: jax.nn.initializers.constant(value),
    "orthogonal": lambda scale=1.0: jax.nn.initializers.orthogonal(scale),
    "identity": lambda: identity,
    "torch_default": _torch_default,
    "lecun1998_uniform": _lecun1998_uniform,
    "torch_default_bias": _torch_default_bias,
}
_ALIASES = {
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
    "xavier_normal": "glorot_normal",
    "xavier_uniform": "glorot_uniform",
    "dirac": "identity",
}


def initializer_names() -> list[str]:
    """Returns every name ``get_initializer`` accepts."""
    return sorted([*_FACTORIES, *_ALIASES])


def get_initializer(init: str | Initializer, **kwargs: Any) -> Initializer:
    """Returns an initializer ``(key, shape, dtype) -> array`` from a name or a callable.

    Args:
      init: a name from ``initializer_names()`` or an initializer (returned unchanged).
      **kwargs: options of the named initializer (``mode``, ``distribution``,
        ``stddev``, ``scale``, ``value``, ``fan_in``).

    Returns:
      The initializer.

    Raises:
      ValueError: for an unknown name or invalid options.
      TypeError: for options the named initializer does not take, or options given
        with a callable.
    """
    if callable(init):
        if kwargs:
            raise TypeError(
                f"options {sorted(kwargs)} can only be given with an initializer "
                f"name, not with the callable {init!r}"
            )
        return init
    if not isinstance(init, str):
        raise TypeError(f"`init` must be a name or a callable, got {init!r}")
    name = _ALIASES.get(init.lower(), init.lower())
    if name not in _FACTORIES:
        raise ValueError(f"unknown initializer {init!r}; known: {', '.join(initializer_names())}")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as e:
        raise TypeError(
            f"initializer {init!r} does not take options {sorted(kwargs)}: {e}"
        ) from None
