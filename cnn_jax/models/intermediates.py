"""Any intermediate activation of any cnn_jax model, by name.

Every model returns ``(outputs, features)``; :func:`tap` adds to that dict every
activation Flax can see, under one naming contract:

* the model's ``features`` keys, as they are (``'block1'``, ``'logits'``, ...);
* values the model sows (``self.sow``) into the ``'intermediates'`` collection, by their path of
  module names and the sown name joined with ``/`` (VGG sows ``'conv1_1'`` (a
  convolution's output, before batch norm and ReLU), ``'bn1_1'`` (after batch norm,
  ``batch_norm=True`` only), ``'relu1_1'`` (after the ReLU), ..., ``'pool5'``);
* the output of every submodule's ``__call__`` (Flax's ``capture_intermediates``), as
  ``'<module path>/__call__'`` (``'features_0/__call__'``,
  ``'layer1/block0/conv1/__call__'``) and, when no name above takes it, also as the
  bare module path (``'features_0'``).

A module or sow called more than once keeps every value: ``'name'`` is then ambiguous
and its values are ``'name#0'``, ``'name#1'``, ... in call order. Only array values are
kept (a submodule that returns a tuple is skipped).

:func:`tap_names` lists the names with their shapes (one abstract evaluation, no
compute); :func:`tap` computes only the requested ones (the other module outputs are
not captured).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["TapName", "tap", "tap_names"]

Array = Any
TapName = str
_METHOD = "__call__"


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, (*prefix, str(k))))
        else:
            out[(*prefix, str(k))] = v
    return out


def _name_values(features: Mapping[str, Any], intermediates: Mapping[str, Any]) -> dict[str, Array]:
    """Applies the naming contract of the module docstring."""
    named: dict[str, Array] = {}
    for k, v in features.items():
        if _is_array(v):
            named[str(k)] = v
    aliases: dict[str, Array] = {}
    for path, values in _flatten(intermediates).items():
        values = [v for v in (values if isinstance(values, tuple) else (values,)) if _is_array(v)]
        if not values:
            continue
        key = "/".join(path)
        found = (
            {key: values[0]}
            if len(values) == 1
            else {f"{key}#{i}": v for i, v in enumerate(values)}
        )
        for name, v in found.items():
            named.setdefault(name, v)
        if path[-1] == _METHOD and len(path) > 1:
            bare = "/".join(path[:-1])
            for name, v in found.items():
                aliases[bare + name[len(key) :]] = v
    for name, v in aliases.items():
        named.setdefault(name, v)
    return named


def _is_array(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype")


def _apply(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    capture: bool | Callable[[nn.Module, str], bool],
    train: bool,
    rngs: Mapping[str, Array] | None,
) -> tuple[Any, dict[str, Array]]:
    mutable = ["intermediates"]
    if train and "batch_stats" in variables:
        mutable.append("batch_stats")
    (outputs, features), state = model.apply(
        dict(variables),
        x,
        train=train,
        capture_intermediates=capture,
        mutable=mutable,
        rngs=rngs,
    )
    named = _name_values(
        features if isinstance(features, Mapping) else {}, state.get("intermediates", {})
    )
    return outputs, named


def tap_names(
    model: nn.Module, variables: Mapping[str, Any], x: Array, *, train: bool = False
) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Every tap name of ``model`` on input ``x``, with its shape and dtype.

    Evaluated abstractly (``jax.eval_shape``): nothing is computed.

    Args:
      model: a cnn_jax model (``__call__(x, train) -> (outputs, features)``).
      variables: its variables (``{'params': ..., 'batch_stats': ...}``).
      x: an input batch (or a ``jax.ShapeDtypeStruct``).
      train: the mode to evaluate in.

    Returns:
      ``{name: (shape, dtype)}``, sorted by name.
    """
    rngs = {"dropout": jax.random.key(0)} if train else None

    def run(v: Any, xx: Array) -> dict[str, Array]:
        return _apply(model, v, xx, True, train, rngs)[1]

    shapes = jax.eval_shape(run, dict(variables), x)
    return {k: (tuple(s.shape), s.dtype) for k, s in shapes.items()}


def tap(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    names: Iterable[str] | str,
    *,
    train: bool = False,
    rngs: Mapping[str, Array] | None = None,
) -> dict[str, Array]:
    """The activations ``names`` of ``model`` on ``x`` (see the module docstring).

    Works under ``jax.jit`` and ``jax.grad`` (the values are ordinary traced arrays).

    Args:
      model: a cnn_jax model.
      variables: its variables.
      x: the input batch.
      names: one tap name or several.
      train: run in training mode (batch statistics; dropout needs ``rngs``).
      rngs: e.g. ``{'dropout': key}`` in training mode.

    Returns:
      ``{name: activation}`` for the requested names.

    Raises:
      TypeError: if ``names`` is not a string or an iterable of strings.
      ValueError: for an unknown name (the message lists the known ones), or a name of
        a value recorded several times (the message names its ``#i`` forms).
    """
    if isinstance(names, str):
        wanted: list[Any] | None = [names]
    elif isinstance(names, Iterable):
        wanted = list(names)
    else:
        wanted = None
    if wanted is None or not all(isinstance(n, str) for n in wanted):
        raise TypeError(f"`names` (={names!r}) must be a tap name or an iterable of tap names")
    modules = {n[: -len(_METHOD) - 1] if n.endswith("/" + _METHOD) else n for n in wanted}
    modules = {m.split("#")[0] for m in modules}

    def keep(mdl: nn.Module, method: str) -> bool:
        return method == _METHOD and "/".join(mdl.scope.path) in modules

    _, named = _apply(model, variables, jnp.asarray(x), keep, train, rngs)
    missing = [n for n in wanted if n not in named]
    if missing:
        known = tap_names(model, variables, x, train=train)
        for n in missing:
            multi = sorted(k for k in known if k.startswith(n + "#"))
            if multi:
                raise ValueError(
                    f"`names` entry {n!r} was recorded {len(multi)} times; use one of {multi}"
                )
        raise ValueError(
            f"`names` entries {missing} are not taps of {type(model).__name__}; "
            f"known: {list(known)}"
        )
    return {n: named[n] for n in wanted}
