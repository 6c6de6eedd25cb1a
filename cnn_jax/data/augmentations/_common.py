"""What every augmentation shares: argument checks, per-example randomness, ``jit_op``.

Randomness: an op draws all of its per-example numbers as one flat ``(N, k)`` array of
uniforms (``uniforms``) and maps them to ranges, integers and coin flips
(``to_range``, ``randint``, ``apply_with_prob``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.ops._validate import check_array_rank, is_int

__all__ = [
    "Array",
    "Augmentation",
    "apply_with_prob",
    "check_batch",
    "check_key",
    "check_prob",
    "jit_op",
    "randint",
    "size_pair",
    "to_range",
    "uniforms",
    "value_range",
]

Array = jax.Array
Augmentation = Callable[..., Array]


def check_batch(batch: Any) -> Array:
    check_array_rank(batch, "batch", 4, "(N, H, W, C)")
    batch = jnp.asarray(batch)
    if not jnp.issubdtype(batch.dtype, jnp.floating):
        raise TypeError(
            f"`batch` must be a float array (convert uint8 images with "
            f"cnn_jax.data.preprocess.to_float), got dtype {batch.dtype}"
        )
    return batch


def check_prob(p: Any, name: str = "p") -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise ValueError(f"`{name}` (={p!r}) must be a probability in [0, 1]")
    return float(p)


def check_key(rng: Any) -> Array:
    if rng is None:
        raise ValueError("`rng` must be a jax.random key, got None")
    return rng


def value_range(value: Any, name: str, *, symmetric: bool = False, low: float | None = None):
    """A number ``v`` as ``(-v, v)`` (symmetric) or ``(v, v)``, or a checked pair."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = (-float(value), float(value)) if symmetric else (float(value), float(value))
    elif (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        lo, hi = float(value[0]), float(value[1])
    else:
        raise ValueError(f"`{name}` (={value!r}) must be a number or a (low, high) pair")
    if lo > hi:
        raise ValueError(f"`{name}` (={value!r}) must have low <= high")
    if low is not None and lo < low:
        raise ValueError(f"`{name}` (={value!r}) must be >= {low}")
    return lo, hi


def size_pair(size: Any, default: tuple[int, int], name: str = "size") -> tuple[int, int]:
    if size is None:
        return default
    if is_int(size):
        size = (size, size)
    if not (isinstance(size, Sequence) and len(size) == 2 and all(is_int(s) for s in size)):
        raise ValueError(f"`{name}` (={size!r}) must be an int or an (height, width) pair")
    if min(size) < 1:
        raise ValueError(f"`{name}` (={size!r}) must be positive")
    return int(size[0]), int(size[1])


def uniforms(rng: Array, n: int, k: int) -> Array:
    """``(n, k)`` independent uniforms in ``[0, 1)``: ``k`` per example.

    One flat draw for the whole batch: XLA:CPU compiles many, or multi-dimensional,
    threefry draws slowly (docs/ENGINEERING.md, "CPU tuning").
    """
    return jax.random.uniform(rng, (n * k,)).reshape(n, k)


def to_range(u: Array, lo: float, hi: float) -> Array:
    """Maps uniforms in ``[0, 1)`` to ``[lo, hi)``."""
    return lo + (hi - lo) * u


def randint(u: Array, high: int) -> Array:
    """Maps uniforms in ``[0, 1)`` to ints in ``[0, high)``."""
    return jnp.minimum(jnp.floor(u * high).astype(jnp.int32), high - 1)


def apply_with_prob(new: Array, old: Array, u: Array, p: float) -> Array:
    """Per example: ``new`` where ``u < p`` (``u``: ``(N,)`` uniforms), else ``old``."""
    if p >= 1.0:
        return new
    if p <= 0.0:
        return old
    take = (u < p).reshape((-1,) + (1,) * (new.ndim - 1))
    return jnp.where(take, new, old)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    return value


def jit_op(fn: Callable[..., Array]) -> Callable[..., Array]:
    """Compiles an augmentation once per shape and keyword arguments (which are static).

    Argument checks run while tracing, so they raise the same clear errors; inside an
    outer ``jit`` the op is inlined. Lists in keyword arguments become tuples.
    """
    static = [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]
    jitted = jax.jit(fn, static_argnames=static)

    @functools.wraps(fn)
    def op(batch: Array, rng: Array | None = None, **kwargs: Any) -> Array:
        return jitted(batch, rng, **{k: _hashable(v) for k, v in kwargs.items()})

    return op
