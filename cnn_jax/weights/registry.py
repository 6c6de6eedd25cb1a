"""torchvision and Keras models by name: build ours and fill it from their weights."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnn_jax.weights._tree import check_patterns
from cnn_jax.weights.convert import WeightSpec, from_keras, from_torch, to_torch
from cnn_jax.weights.io import load_keras_weights, load_state_dict

__all__ = [
    "export_torchvision",
    "keras_specs",
    "load_keras",
    "load_torchvision",
    "torchvision_specs",
]

#: The model files that declare ``TORCHVISION_SPECS``/``KERAS_SPECS``.
_FAMILIES = ("alexnet", "vgg", "resnet", "densenet", "googlenet", "inception", "xception")


def _specs(attr: str) -> dict[str, WeightSpec]:
    out: dict[str, WeightSpec] = {}
    for family in _FAMILIES:
        module = importlib.import_module(f"cnn_jax.models.{family}")
        out.update(getattr(module, attr, {}))
    return out


def torchvision_specs() -> dict[str, WeightSpec]:
    """The torchvision models we can load, by torchvision's constructor name."""
    return _specs("TORCHVISION_SPECS")


def keras_specs() -> dict[str, WeightSpec]:
    """The ``keras.applications`` models we can load, by Keras' name."""
    return _specs("KERAS_SPECS")


def _spec(specs: Mapping[str, WeightSpec], name: str, source: str) -> WeightSpec:
    if name not in specs:
        raise ValueError(f"unknown {source} model {name!r}; known: {', '.join(sorted(specs))}")
    return specs[name]


def _build(
    spec: WeightSpec, num_classes: int, key: jax.Array | None, reinit: tuple[str, ...]
) -> tuple[Any, Any, Any]:
    model = spec.model(num_classes=num_classes, **spec.model_kwargs)
    x = jnp.zeros((1, spec.input_size, spec.input_size, 3), jnp.float32)
    rngs = {"params": key, "dropout": key}

    def init(rngs: Any) -> Any:
        return model.init(rngs, x, train=False)

    template = jax.eval_shape(init, {"params": jax.random.key(0), "dropout": jax.random.key(0)})
    if reinit:
        check_patterns(tuple(reinit), traverse_util.flatten_dict(dict(template)), "reinit")
        if key is None:
            raise ValueError(f"`key` is needed to initialise the layers of `reinit` (={reinit!r})")
        fresh = jax.jit(init)(rngs)
        return model, fresh, fresh
    return model, template, None


def _max_bytes(template: Any) -> int:
    """A bound on the bytes of a weight file for ``template``: every leaf as float64."""
    return 8 * sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(template)) + (1 << 20)


def _merge(loaded: Any, fresh: Any) -> dict[str, Any]:
    flat = traverse_util.flatten_dict(dict(fresh)) if fresh is not None else {}
    flat.update(traverse_util.flatten_dict(loaded))
    return jax.tree.map(jnp.asarray, traverse_util.unflatten_dict(flat))


def load_torchvision(
    name: str,
    weights: str | os.PathLike | Mapping[str, Any],
    *,
    num_classes: int = 1000,
    reinit: tuple[str, ...] = (),
    key: jax.Array | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Builds our version of a torchvision model and loads its weights.

    Args:
      name: torchvision's constructor name, e.g. ``"resnet50"`` (see
        ``torchvision_specs()``).
      weights: a ``.pth``/``.safetensors`` file (read without executing code) or a
        state dict of arrays.
      num_classes: the classifier's outputs.
      reinit: patterns of variables to initialise afresh instead of loading (e.g.
        ``("fc",)`` for a new head of ``num_classes`` outputs); see
        ``cnn_jax.weights.from_torch``'s ``exclude``.
      key: the PRNG key for those fresh variables.

    Returns:
      ``(model, variables)``: apply with ``model.apply(variables, x, train=False)``.

    Raises:
      ValueError: for an unknown name; ``WeightMismatchError`` (a ``ValueError``)
        when the weights do not fit, listing the keys; naming the key, for NaN or Inf
        weights or a negative running variance; naming the pattern, for a ``reinit``
        pattern that matches no variable.
    """
    spec = _spec(torchvision_specs(), name, "torchvision")
    state = load_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else weights
    if spec.prepare is not None:
        state = spec.prepare(state)
    model, template, fresh = _build(spec, num_classes, key, reinit)
    loaded = from_torch(
        state, template, key_fn=spec.key_fn, transforms=spec.transforms, exclude=reinit
    )
    return model, _merge(loaded, fresh)


def export_torchvision(name: str, variables: Any) -> dict[str, np.ndarray]:
    """Our variables -> a state dict that torchvision's ``name`` loads with ``strict=True``.

    Args:
      name: torchvision's constructor name (a model whose spec allows export).
      variables: ``{'params': ..., 'batch_stats': ...}`` of our model.

    Returns:
      ``{key: array}``; save with ``cnn_jax.weights.save_state_dict``.

    Raises:
      ValueError: for an unknown name or one without export.
    """
    spec = _spec(torchvision_specs(), name, "torchvision")
    if not spec.export:
        exportable = sorted(k for k, s in torchvision_specs().items() if s.export)
        raise ValueError(f"export to {name!r} is not supported; supported: {exportable}")
    return to_torch(variables, key_fn=spec.key_fn, transforms=spec.transforms)


def load_keras(
    name: str,
    weights: str | os.PathLike | Mapping[str, list[Any]],
    *,
    num_classes: int = 1000,
    reinit: tuple[str, ...] = (),
    key: jax.Array | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Builds our version of a ``keras.applications`` model and loads its weights.

    Args:
      name: Keras' name, e.g. ``"Xception"`` (see ``keras_specs()``).
      weights: a ``.h5``/``.weights.h5`` file or ``{layer: [arrays]}``.
      num_classes: the classifier's outputs.
      reinit: patterns of variables to initialise afresh (see ``load_torchvision``).
      key: the PRNG key for those.

    Returns:
      ``(model, variables)``.

    Raises:
      ValueError: for an unknown name, weights that do not fit or hold NaN, Inf or
        negative variances, a ``reinit`` pattern that matches no variable, or a file
        declaring more bytes than the model's variables could take (checked before
        reading).
    """
    spec = _spec(keras_specs(), name, "Keras")
    model, template, fresh = _build(spec, num_classes, key, reinit)
    if isinstance(weights, (str, os.PathLike)):
        # The file is checked against the model's size before anything is read.
        layers = load_keras_weights(weights, max_bytes=_max_bytes(template))
    else:
        layers = weights
    loaded = from_keras(layers, template, key_fn=spec.key_fn, exclude=reinit)
    return model, _merge(loaded, fresh)
