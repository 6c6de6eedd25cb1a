"""Mapping PyTorch state dicts and Keras weights onto flax variable trees and back.

The models name their submodules after the source framework's modules, so one set of
rules converts every family:

* a module's path (flax module names from the root) gives the PyTorch key prefix
  through ``key_fn`` (by default ``default_torch_key``: ``layer1_0`` -> ``layer1.0``) or
  the Keras layer name (by default the last module name);
* the leaf gives the tensor and its layout. PyTorch: ``kernel`` <- ``weight`` with
  the convolution layout ``(O, I, *spatial)`` moved to ``(*spatial, I, O)`` (a Linear's
  ``(O, I)`` transposed), ``bias`` <- ``bias``, ``scale`` <- ``weight``,
  ``batch_stats/mean`` <- ``running_mean``, ``batch_stats/var`` <- ``running_var``
  (``num_batches_tracked`` is ignored on import and written as 0 on export). Keras
  kernels are already channels-last and are taken as they are, in each layer's
  weight order.

Every mismatch (a key missing on either side, a wrong shape) is collected and
reported at once in a ``WeightMismatchError`` that lists the offending keys.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from flax import traverse_util
from flax.core import unfreeze

__all__ = [
    "WeightMismatchError",
    "WeightSpec",
    "default_keras_key",
    "default_torch_key",
    "from_keras",
    "from_torch",
    "permute_flatten",
    "to_torch",
]

Path = tuple[str, ...]
KeyFn = Callable[[Path], str]
Transform = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]

#: (collection, leaf) -> PyTorch tensor name.
_TORCH_LEAF = {
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
_IGNORED_TORCH = ("num_batches_tracked",)
_MAX_LISTED = 25


class WeightMismatchError(ValueError):
    """The weights do not fit the model; the message lists the offending keys."""


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """How a source framework's model maps onto one of ours.

    Attributes:
      model: our variant (a module class or partial taking ``num_classes``).
      key_fn: module path -> the source's module prefix (PyTorch) or layer name (Keras).
      transforms: ``{source key: (to_ours, to_source)}`` functions on the
        source-layout array, applied before the layout rule on import and after its
        inverse on export.
      input_size: the side of the square input the source model was trained at.
      export: whether ``to_torch`` output loads into the source model
        (``load_state_dict(strict=True)``).
      model_kwargs: extra attributes for ``model`` (e.g. ``transform_input``).
      prepare: applied to a loaded state dict first, e.g. to rename the keys of old
        checkpoints (torchvision's DenseNet files use ``norm.1`` for ``norm1``).
    """

    model: Callable[..., Any]
    key_fn: KeyFn | None = None
    transforms: Mapping[str, Transform] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    input_size: int = 224
    export: bool = False
    model_kwargs: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    prepare: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None


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


def default_keras_key(path: Path) -> str:
    """Flax module path -> Keras layer name: the last module name."""
    return path[-1]


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


def _flat(variables: Any) -> dict[tuple[str, ...], Any]:
    variables = unfreeze(variables) if not isinstance(variables, dict) else variables
    return traverse_util.flatten_dict(variables)


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n    " + "\n    ".join(shown) + more


def _raise(source: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> None:
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


def _excluded(key: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    joined = "/".join(key)
    return any(re.search(p, joined) for p in patterns)


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


def _dtype(template_leaf: Any) -> Any:
    return getattr(template_leaf, "dtype", np.float32)


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
    """
    key_fn = key_fn or default_torch_key
    transforms = transforms or {}
    flat = _flat(variables)
    out: dict[tuple[str, ...], np.ndarray] = {}
    missing, shapes, used = [], [], set()
    for key, template in flat.items():
        name = _torch_name(key, key_fn)
        if _excluded(key, exclude):
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
        out[key] = x.astype(_dtype(template))
    unexpected = [
        k for k in state_dict if k not in used and k.rsplit(".", 1)[-1] not in _IGNORED_TORCH
    ]
    _raise("PyTorch", missing, unexpected if strict else [], shapes)
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
    for key, value in _flat(variables).items():
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


def _keras_order(leaves: Mapping[tuple[str, str], Any]) -> list[tuple[str, str]]:
    """Our leaves of one module in the order Keras stores that layer's weights."""
    names = {leaf for _, leaf in leaves}
    if "depthwise_kernel" in names:
        order = [("params", "depthwise_kernel"), ("params", "pointwise_kernel")]
        order += [("params", "bias")]
    elif ("batch_stats", "mean") in leaves:
        order = [("params", "scale"), ("params", "bias")]
        order += [("batch_stats", "mean"), ("batch_stats", "var")]
    else:
        order = [("params", "kernel"), ("params", "bias")]
    order = [k for k in order if k in leaves]
    if set(order) != set(leaves):
        raise WeightMismatchError(
            f"variables {sorted('/'.join(k) for k in set(leaves) - set(order))} have no Keras "
            "counterpart"
        )
    return order


def _fit_keras(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    if x.shape == shape:
        return x
    # A depthwise kernel: Keras (*window, C, multiplier), ours (*window, 1, C*multiplier);
    # both order the output channels c * multiplier + m.
    if (
        x.ndim == len(shape) >= 3
        and shape[-2] == 1
        and x.shape[:-2] == shape[:-2]
        and x.shape[-2] * x.shape[-1] == shape[-1]
    ):
        return x.reshape(shape)
    return None


def from_keras(
    keras_weights: Mapping[str, list[Any]],
    variables: Any,
    *,
    key_fn: KeyFn | None = None,
    strict: bool = True,
    exclude: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Fills a variable tree from Keras weights ``{layer name: [arrays]}``.

    Each of our modules takes the weights of the Keras layer ``key_fn(path)`` in Keras'
    order: a convolution or dense layer ``[kernel, bias]``, a separable convolution
    ``[depthwise_kernel, pointwise_kernel, bias]``, a batch normalization
    ``[gamma, beta, moving_mean, moving_variance]`` (each without the parts the layer
    lacks).

    A depthwise kernel is checked by its window and its number of output maps: Keras'
    ``(*window, C, multiplier)`` fits our ``(*window, 1, C * multiplier)``. How that
    number splits into ``C`` and the multiplier is not in a variable tree (it depends on
    the layer's input), so a file layer with other input channels but the same product
    is caught by the neighbouring layers' shapes, not by this one's.

    Args:
      keras_weights: e.g. from ``cnn_jax.weights.load_keras_weights``.
      variables: the template (see ``from_torch``).
      key_fn: module path -> Keras layer name (``default_keras_key``).
      strict: also fail on Keras layers with weights that the model does not use.
      exclude: as in ``from_torch``; a module any of whose variables match is skipped.

    Returns:
      A new ``{collection: tree}`` of numpy arrays (less the excluded modules).

    Raises:
      WeightMismatchError: listing missing layers, unused layers, and layers whose
        weight count or shapes do not fit.
    """
    key_fn = key_fn or default_keras_key
    modules: dict[Path, dict[tuple[str, str], Any]] = {}
    for key, template in _flat(variables).items():
        modules.setdefault(tuple(key[1:-1]), {})[(key[0], key[-1])] = template
    out: dict[tuple[str, ...], np.ndarray] = {}
    missing, shapes, used = [], [], set()
    for path, leaves in modules.items():
        layer = key_fn(path)
        order = _keras_order(leaves)
        if any(_excluded((c, *path, leaf), exclude) for c, leaf in leaves):
            used.add(layer)
            continue
        if layer not in keras_weights:
            missing.append(f"{layer} (for {'/'.join(path)})")
            continue
        used.add(layer)
        arrays = keras_weights[layer]
        if len(arrays) != len(order):
            shapes.append(
                f"{layer}: {len(arrays)} weights in the file, the model's {'/'.join(path)} "
                f"needs {len(order)} ({', '.join(leaf for _, leaf in order)})"
            )
            continue
        for (collection, leaf), x in zip(order, arrays, strict=True):
            template = leaves[(collection, leaf)]
            fitted = _fit_keras(np.asarray(x), tuple(template.shape))
            if fitted is None:
                shapes.append(
                    f"{layer}/{leaf}: {tuple(np.shape(x))} in the file, the model needs "
                    f"{tuple(template.shape)}"
                )
                continue
            out[(collection, *path, leaf)] = fitted.astype(_dtype(template))
    unexpected = [k for k, v in keras_weights.items() if k not in used and len(v)]
    _raise("Keras", missing, unexpected if strict else [], shapes)
    return traverse_util.unflatten_dict(out)
