"""Argument checks shared by every op: errors name the argument and its value."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "as_tuple",
    "check_array_rank",
    "check_precision",
    "check_window",
    "is_int",
    "show",
    "spatial_rank",
]


def is_int(value: Any) -> bool:
    """Returns whether ``value`` is an integer (Python or numpy), excluding bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_tuple(value: Any, n: int, name: str, *, minimum: int | None = 1) -> tuple[int, ...]:
    """Broadcasts an int, or checks a sequence of ints, to a tuple of length ``n``.

    Args:
      value: an int (broadcast to every spatial dimension) or a sequence of ``n`` ints.
      n: the number of spatial dimensions.
      name: the argument's name, used in error messages.
      minimum: the smallest allowed entry (``None`` for no bound).

    Returns:
      A tuple of ``n`` Python ints.

    Raises:
      TypeError: if ``value`` is not an int or a sequence of ints.
      ValueError: if the sequence has the wrong length or an entry is below ``minimum``.
    """
    if is_int(value):
        out = (int(value),) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if not all(is_int(v) for v in value):
            raise TypeError(f"`{name}` must be an int or a sequence of ints, got {value!r}")
        if len(value) != n:
            raise ValueError(
                f"`{name}` (={tuple(value)!r}) must have one entry per spatial dimension "
                f"(={n}), or be a single int"
            )
        out = tuple(int(v) for v in value)
    else:
        raise TypeError(f"`{name}` must be an int or a sequence of ints, got {value!r}")
    if minimum is not None and any(v < minimum for v in out):
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"`{name}` (={show(value)}) must be {what}")
    return out


def spatial_rank(x: Any, name: str = "x") -> int:
    """Checks ``x`` is ``(N, *spatial, C)`` with at least one spatial dimension.

    Args:
      x: the array.
      name: the argument's name.

    Returns:
      The number of spatial dimensions.

    Raises:
      TypeError: if ``x`` is not an array.
      ValueError: if it has fewer than 3 dimensions.
    """
    check_array_rank(x, name, None, "")
    if x.ndim < 3:
        raise ValueError(
            f"`{name}` must have shape (N, *spatial, C) with at least one spatial dimension, "
            f"got shape {tuple(x.shape)}"
        )
    return x.ndim - 2


def show(value: Any) -> str:
    """A value for an error message: sequences as tuples."""
    return repr(tuple(value)) if isinstance(value, Sequence) else repr(value)


def check_array_rank(x: Any, name: str, expected: int | None, what: str) -> None:
    """Raises a ``ValueError`` if ``x.ndim`` differs from ``expected``.

    Args:
      x: an array-like with ``ndim`` and ``shape``.
      name: the argument's name.
      expected: the rank it must have (``None`` skips the check).
      what: a description of the expected layout, e.g. ``"(N, *spatial, C)"``.

    Raises:
      TypeError: if ``x`` is not an array.
      ValueError: if the rank differs.
    """
    if not hasattr(x, "ndim") or not hasattr(x, "shape"):
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}")
    if expected is not None and x.ndim != expected:
        raise ValueError(
            f"`{name}` must have rank {expected} {what}, got shape {tuple(x.shape)} (rank {x.ndim})"
        )


def check_window(kernel: Any, name: str, window: Sequence[int]) -> None:
    """Raises a ``ValueError`` if a window size taken from a kernel's shape is 0.

    Args:
      kernel: the kernel array (for its shape in the message).
      name: the kernel argument's name.
      window: the window sizes, one per spatial dimension.

    Raises:
      ValueError: if any window size is not positive.
    """
    if any(k < 1 for k in window):
        raise ValueError(
            f"`{name}` (shape {tuple(kernel.shape)}) has an empty window {tuple(window)}: "
            "every window size must be positive"
        )


@functools.lru_cache(maxsize=64)
def _check_hashable_precision(precision: Any) -> None:
    spec = jax.ShapeDtypeStruct((1, 1), jnp.float32)
    contract = (((1,), (0,)), ((), ()))
    jax.eval_shape(lambda a: lax.dot_general(a, a, contract, precision=precision), spec)


def check_precision(precision: Any) -> None:
    """Raises unless ``lax`` accepts ``precision``, also where a fast path ignores it.

    The check is ``lax``'s own (a shape-only trace of a 1x1 product), cached per value.

    Args:
      precision: a ``lax.PrecisionLike`` value.

    Raises:
      ValueError: naming ``precision`` and its value, with ``lax``'s list of the
        accepted forms.
    """
    try:
        try:
            hash(precision)
        except TypeError:
            _check_hashable_precision.__wrapped__(precision)
        else:
            _check_hashable_precision(precision)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`precision` (={precision!r}) is not accepted by lax: {e}") from None
