"""Keras weights ``{layer name: [arrays]}`` -> flax variable trees.

See ``cnn_jax.weights.convert`` for the rules common to both frameworks.

A module's path gives the Keras layer name through ``key_fn`` (``default_keras_key``,
the last module name, by default); Keras kernels are already channels-last and are
taken as they are, in each layer's weight order.
"""

from __future__ import annotations

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
from cnn_jax.weights.spec import KeyFn, Path, WeightMismatchError

__all__ = ["default_keras_key", "from_keras"]


def default_keras_key(path: Path) -> str:
    """Flax module path -> Keras layer name: the last module name."""
    return path[-1]


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
      ValueError: naming the layer and weight, for a NaN or Inf value or a negative
        moving variance; naming the pattern, for an ``exclude`` pattern that matches
        no variable.
    """
    key_fn = key_fn or default_keras_key
    modules: dict[Path, dict[tuple[str, str], Any]] = {}
    flat = flat_variables(variables)
    check_patterns(tuple(exclude), flat)
    for key, template in flat.items():
        modules.setdefault(tuple(key[1:-1]), {})[(key[0], key[-1])] = template
    out: dict[tuple[str, ...], np.ndarray] = {}
    missing, shapes, used = [], [], set()
    for path, leaves in modules.items():
        layer = key_fn(path)
        order = _keras_order(leaves)
        if any(excluded((c, *path, leaf), exclude) for c, leaf in leaves):
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
            key = (collection, *path, leaf)
            out[key] = check_values(f"{layer}/{leaf}", key, fitted.astype(leaf_dtype(template)))
    unexpected = [k for k, v in keras_weights.items() if k not in used and len(v)]
    raise_mismatch("Keras", missing, unexpected if strict else [], shapes)
    return traverse_util.unflatten_dict(out)
