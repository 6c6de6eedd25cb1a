"""Variable-tree helpers shared by the PyTorch and Keras conversions (not public)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from flax import traverse_util
from flax.core import unfreeze

from cnn_jax.weights.spec import WeightMismatchError

__all__ = [
    "check_patterns",
    "check_values",
    "excluded",
    "flat_variables",
    "leaf_dtype",
    "raise_mismatch",
]

_MAX_LISTED = 25


def flat_variables(variables: Any) -> dict[tuple[str, ...], Any]:
    """``{(collection, *module path, leaf): value}`` of a (possibly frozen) tree."""
    variables = unfreeze(variables) if not isinstance(variables, dict) else variables
    return traverse_util.flatten_dict(variables)


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n    " + "\n    ".join(shown) + more


def raise_mismatch(
    source: str, missing: list[str], unexpected: list[str], shapes: list[str]
) -> None:
    if not (missing or unexpected or shapes):
        return
    parts = [f"the {source} weights do not fit the model:"]
    if missing:
        parts.append(_listing(f"missing from the {source} weights", missing))
    if unexpected:
        parts.append(_listing("not used by the model", unexpected))
    if shapes:
        parts.append(_listing("shape mismatches", shapes))
    raise WeightMismatchError("\n".join(parts))


def excluded(key: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    """Whether ``collection/module/.../leaf`` matches one of ``patterns`` (``re.search``)."""
    joined = "/".join(key)
    return any(re.search(p, joined) for p in patterns)


def leaf_dtype(template_leaf: Any) -> Any:
    """The dtype a loaded leaf takes: the template's (float32 if it has none)."""
    return getattr(template_leaf, "dtype", np.float32)


def check_patterns(patterns: tuple[str, ...], keys: Any, arg: str = "exclude") -> None:
    """Every pattern must be a regular expression matching some ``collection/.../leaf``.

    Raises:
      ValueError: naming ``arg``, the patterns that are not regular expressions or
        that match no key, and a few of the keys.
    """
    joined = ["/".join(k) for k in keys]
    unmatched = []
    for p in patterns:
        try:
            regex = re.compile(p)
        except (re.error, TypeError) as e:
            raise ValueError(f"`{arg}` pattern {p!r} is not a regular expression: {e}") from e
        if not any(regex.search(k) for k in joined):
            unmatched.append(p)
    if unmatched:
        shown = ", ".join(joined[:8]) + (", ..." if len(joined) > 8 else "")
        raise ValueError(
            f"`{arg}` pattern(s) {unmatched} match no variable of the model (patterns are "
            f"searched in 'collection/module/.../leaf', e.g. {shown})"
        )


def check_values(name: str, key: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    """Returns ``x``, checked: finite, and non-negative if it is a running variance.

    Raises:
      ValueError: naming the weight (``name``, ``key``) if it holds NaN or Inf, or if
        it is a running variance (``batch_stats/.../var``) with a negative entry.
    """
    where = f"weight {name!r} (for {'/'.join(key)})"
    values = x if x.dtype.kind in "biuf" else x.astype(np.float32)  # bfloat16 and the like
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(
                f"{where} holds {bad.size} non-finite value(s) (first {values.flat[bad[0]]} "
                f"at flat index {bad[0]}); NaN and Inf weights are not loaded"
            )
    if key[0] == "batch_stats" and key[-1] == "var" and values.size and values.min() < 0:
        i = int(np.argmin(values))
        raise ValueError(
            f"{where} is a running variance with negative value(s) (min {values.flat[i]} at "
            f"flat index {i})"
        )
    return x
