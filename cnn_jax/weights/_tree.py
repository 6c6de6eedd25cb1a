"""Variable-tree helpers shared by the PyTorch and Keras conversions (not public)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from flax import traverse_util
from flax.core import unfreeze

from cnn_jax.weights.spec import WeightMismatchError

__all__ = ["excluded", "flat_variables", "leaf_dtype", "raise_mismatch"]

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
