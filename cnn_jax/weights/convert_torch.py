"""PyTorch state dicts <-> flax variable trees (see ``cnn_jax.weights.convert``).

A module's path gives the PyTorch key prefix through ``key_fn`` (``default_torch_key``
by default); the leaf gives the tensor and its layout: ``kernel`` <- ``weight`` with
the convolution layout ``(O, I, *spatial)`` moved to ``(*spatial, I, O)`` (a Linear's
``(O, I)`` transposed), ``bias`` <- ``bias``, ``scale`` <- ``weight``,
``batch_stats/mean`` <- ``running_mean``, ``batch_stats/var`` <- ``running_var``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from cnn_jax.weights._tree import (
    check_patterns,
    check_values,
    excluded,
    flat_variables,
    leaf_dtype,
    raise_mismatch,
)
from cnn_jax.weights.spec import KeyFn, Path, Transform, WeightMismatchError

__all__ = ["default_torch_key", "from_torch", "permute_flatten", "to_torch"]

_TORCH_LEAF = {
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
_IGNORED_TORCH = ("num_batches_tracked",)


def default_torch_key(path: Path) -> str:
    """Flax module path -> PyTorch module prefix.

    Segments are joined with ``.``; inside a segment, an all-digit ``_``-separated token
    (and the token after it) starts a new ``.`` component, so ``layer1_0`` ->
    ``layer1.0``, ``features_0`` -> ``features.0``, ``downsample_1`` -> ``downsample.1``,
    while ``Conv2d_1a_3x3`` and ``Mixed_5b`` stay as they are.

    Args:
      path: module names from the root.

    Returns:
      The dotted prefix.
    """
    parts = []
    for segment in path:
        tokens = segment.split("_")
        out = tokens[0]
        for prev, tok in itertools.pairwise(tokens):
            out += ("." if tok.isdigit() or prev.isdigit() else "_") + tok
        parts.append(out)
    return ".".join(parts)


def permute_flatten(chw: tuple[int, int, int]) -> Transform:
    """The transform for the first Linear after a flatten of a ``(C, H, W)`` map.

    PyTorch flattens channels-first (``c*H*W + h*W + w``), we flatten channels-last
    (``(h*W + w)*C + c``); the Linear's input columns are permuted accordingly.

    Args:
      chw: the flattened map's ``(C, H, W)``.

    Returns:
      ``(to_ours, to_torch)`` on a PyTorch-layout ``(out, C*H*W)`` weight.
    """
    c, h, w = chw

    def to_ours(x: np.ndarray) -> np.ndarray:
        return x.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(x.shape[0], -1)

    def to_torch(x: np.ndarray) -> np.ndarray:
        return x.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(x.shape[0], -1)

    return to_ours, to_torch


def _torch_name(key: tuple[str, ...], key_fn: KeyFn) -> str:
    collection, *path, leaf = key
    name = _TORCH_LEAF.get((collection, leaf))
    if name is None:
        raise WeightMismatchError(
            f"variable {'/'.join(key)!r} has no PyTorch counterpart (known leaves: "
            f"{sorted('/'.join(k) for k in _TORCH_LEAF)})"
        )
    return f"{key_fn(tuple(path))}.{name}"


def _to_ours_layout(leaf: str, x: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and x.ndim >= 3:
        return np.transpose(x, (*range(2, x.ndim), 1, 0))
    if leaf == "kernel" and x.ndim == 2:
        return x.T
    return x


def _to_torch_layout(leaf: str, x: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and x.ndim >= 3:
        n = x.ndim
        return np.transpose(x, (n - 1, n - 2, *range(n - 2)))
    if leaf == "kernel" and x.ndim == 2:
        return x.T
    return x


def from_torch(
    state_dict: Mapping[str, Any],
    variables: Any,
    *,
    key_fn: KeyFn | None = None,
    transforms: Mapping[str, Transform] | None = None,
    strict: bool = True,
    exclude: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Fills a variable tree from a PyTorch state dict.

    Args:
      state_dict: ``{name: array}`` (``cnn_jax.weights.load_state_dict`` reads files).
      variables: the template: the model's variables or their shapes (e.g. from
        ``jax.eval_shape(model.init, ...)``), with ``params`` and ``batch_stats``.
      key_fn: module path -> PyTorch prefix (``default_torch_key``).
      transforms: per-key ``(to_ours, to_torch)`` functions, e.g. ``permute_flatten``.
      strict: also fail on state-dict entries the model does not use.
      exclude: regular expressions (``re.search``) on ``collection/module/.../leaf``;
        matching variables are left out of the result (e.g. a classifier to be trained
        anew) and their PyTorch entries are ignored.

    Returns:
      A new ``{collection: tree}`` of numpy arrays with the template's structure,
      shapes and dtypes (less the excluded variables).

    Raises:
      WeightMismatchError: listing missing keys, unused keys and shape mismatches.
      ValueError: naming the entry, for a NaN or Inf value or a negative running
        variance; naming the pattern, for an ``exclude`` pattern that matches no
        variable.
    """
    key_fn = key_fn or default_torch_key
    transforms = transforms or {}
    flat = flat_variables(variables)
    check_patterns(tuple(exclude), flat)
    out: dict[tuple[str, ...], np.ndarray] = {}
    missing, shapes, used = [], [], set()
    for key, template in flat.items():
        name = _torch_name(key, key_fn)
        if excluded(key, exclude):
            used.add(name)
            continue
        if name not in state_dict:
            missing.append(f"{name} (for {'/'.join(key)}, shape {tuple(template.shape)})")
            continue
        used.add(name)
        x = np.asarray(state_dict[name])
        if name in transforms:
            x = transforms[name][0](x)
        x = _to_ours_layout(key[-1], x)
        if x.shape != tuple(template.shape):
            shapes.append(
                f"{name}: {tuple(np.shape(state_dict[name]))} in the file, the model's "
                f"{'/'.join(key)} needs {tuple(template.shape)}"
            )
            continue
        out[key] = check_values(name, key, x.astype(leaf_dtype(template)))
    unexpected = [
        k for k in state_dict if k not in used and k.rsplit(".", 1)[-1] not in _IGNORED_TORCH
    ]
    raise_mismatch("PyTorch", missing, unexpected if strict else [], shapes)
    return traverse_util.unflatten_dict(out)


def to_torch(
    variables: Any,
    *,
    key_fn: KeyFn | None = None,
    transforms: Mapping[str, Transform] | None = None,
) -> dict[str, np.ndarray]:
    """The inverse of ``from_torch``: a PyTorch state dict of numpy arrays.

    Modules with running statistics also get ``num_batches_tracked`` (0), which
    ``torch.nn.BatchNorm*`` expects under ``load_state_dict(strict=True)``.

    Args:
      variables: ``{'params': ..., 'batch_stats': ...}``.
      key_fn: module path -> PyTorch prefix (``default_torch_key``).
      transforms: as in ``from_torch``; the second function of each pair is used.

    Returns:
      ``{name: array}``; ``torch.from_numpy`` each value to get tensors.

    Raises:
      WeightMismatchError: if a variable has no PyTorch counterpart or two variables
        map to one name.
    """
    key_fn = key_fn or default_torch_key
    transforms = transforms or {}
    out: dict[str, np.ndarray] = {}
    for key, value in flat_variables(variables).items():
        name = _torch_name(key, key_fn)
        if name in out:
            raise WeightMismatchError(f"two variables map to the PyTorch key {name!r}")
        x = _to_torch_layout(key[-1], np.asarray(value))
        if name in transforms:
            x = transforms[name][1](x)
        out[name] = np.ascontiguousarray(x)
        if key[0] == "batch_stats" and key[-1] == "var":
            out[f"{key_fn(tuple(key[1:-1]))}.num_batches_tracked"] = np.zeros((), np.int64)
    return out
