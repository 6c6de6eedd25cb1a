"""Signal propagation at initialization: per-layer activation and gradient magnitudes.

For a model and a batch, :func:`layer_signals` runs one forward and one backward pass
of the mean softmax cross-entropy and reports, for every convolution and dense layer
in call order (the order of depth):

* ``activation_std``: the standard deviation of the layer's output (its
  pre-activation), over the batch, the positions and the channels;
* ``grad_std``: the standard deviation of the loss's gradient with respect to that
  output (the back-propagated signal);
* ``weight_grad_std``: the standard deviation of the gradient of the layer's kernel.

A good initialization keeps ``activation_std`` and ``grad_std`` roughly constant with
depth (He et al. 2015 for ReLU networks); too small a scale makes both vanish
geometrically, too large a one makes them explode, and zeros give exactly zero
everywhere below the output layer (Glorot & Bengio 2010 plot the same quantities).

:func:`reinitialize` redraws every kernel of a variables tree with a named initializer
(``cnn_jax.layers.initializers``) and zeros every bias, so one architecture can be
compared under several schemes.

The layer outputs' gradients are taken by intercepting every ``Conv``/``Dense`` call
(``flax.linen.intercept_methods``) and adding a zero array to its output, whose
gradient is then the gradient with respect to the output; nothing in the model changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.traverse_util import flatten_dict, unflatten_dict

from cnn_jax.layers import Conv
from cnn_jax.layers.initializers import get_initializer

__all__ = ["LayerSignal", "layer_signals", "reinitialize"]

Array = Any
#: The layer types whose outputs are measured by default.
DEFAULT_LAYER_TYPES: tuple[type, ...] = (Conv, nn.Conv, nn.Dense)


@dataclasses.dataclass(frozen=True)
class LayerSignal:
    """The signal at one layer (see the module docstring).

    Attributes:
      name: the layer's module path, ``/``-joined.
      depth: its position in call order, from 1.
      activation_std: standard deviation of its output.
      grad_std: standard deviation of the loss's gradient with respect to its output.
      weight_grad_std: standard deviation of the gradient of its kernel (None if it has
        no ``kernel`` parameter).
    """

    name: str
    depth: int
    activation_std: float
    grad_std: float
    weight_grad_std: float | None


def _is_kernel(path: tuple[str, ...]) -> bool:
    return path[-1] == "kernel"


def reinitialize(
    params: Mapping[str, Any], init: str | Callable[..., Array], key: jax.Array, **options: Any
) -> dict[str, Any]:
    """Redraws every ``kernel`` of ``params`` with ``init``; every ``bias`` becomes 0.

    Other parameters (batch norm scales, PReLU slopes, ...) are kept.

    Args:
      params: a (nested) parameter dict, e.g. ``variables['params']``.
      init: an initializer name (``'zeros'``, ``'small_random'``, ``'glorot_normal'``,
        ``'he_normal'``, ...) or an initializer.
      key: the random key; kernels get independent draws.
      **options: the initializer's options, e.g. ``stddev=0.01``.

    Returns:
      A new parameter dict of the same structure.

    Raises:
      ValueError: for an unknown initializer name, or ``params`` without any kernel.
    """
    initializer = get_initializer(init, **options)
    flat = flatten_dict(dict(params))
    kernels = sorted(p for p in flat if _is_kernel(p))
    if not kernels:
        raise ValueError("`params` has no 'kernel' parameter to reinitialize")
    keys = dict(zip(kernels, jax.random.split(key, len(kernels))))
    out = {}
    for path, value in flat.items():
        if path in keys:
            out[path] = initializer(keys[path], value.shape, value.dtype)
        elif path[-1] == "bias":
            out[path] = jnp.zeros_like(value)
        else:
            out[path] = value
    return unflatten_dict(out)


def layer_signals(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: Array,
    labels: Array,
    *,
    layer_types: tuple[type, ...] = DEFAULT_LAYER_TYPES,
    train: bool = False,
) -> list[LayerSignal]:
    """Per-layer activation and gradient magnitudes of one forward/backward pass.

    Args:
      model: a ``cnn_jax`` model, ``apply(variables, x, train) -> (logits, features)``.
      variables: its variables.
      x: a batch of inputs.
      labels: ``(N,)`` integer class labels for the cross-entropy.
      layer_types: the module classes whose outputs are measured.
      train: the model's mode (``False``: batch norm uses its running statistics,
        dropout is off; with ``True`` the batch statistics are used and not stored).

    Returns:
      One ``LayerSignal`` per measured call, in call order.

    Raises:
      ValueError: if ``labels`` is not ``(N,)`` for the batch of ``x``, or no layer of
        ``layer_types`` is called.
    """
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(
            f"`labels` must have shape ({x.shape[0]},) for the batch of `x`, got {labels.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"`labels` must be integer class labels, got dtype {labels.dtype}")
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    rngs = {"dropout": jax.random.key(0)} if train else None

    order: list[str] = []  # call order, filled while tracing (dict keys get sorted)

    def run(params: Any, taps: dict[str, Array] | None) -> tuple[Array, dict[str, Array]]:
        outputs: dict[str, Array] = {}
        order.clear()

        def interceptor(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
            y = next_fun(*args, **kwargs)
            module = context.module
            if context.method_name != "__call__" or not isinstance(module, layer_types):
                return y
            name = "/".join(module.path)
            if name in outputs:  # a shared module called again: a new tap
                name = f"{name}#{sum(n.split('#')[0] == name for n in order)}"
            if taps is not None:
                y = y + taps[name]
            outputs[name] = y
            order.append(name)
            return y

        with nn.intercept_methods(interceptor):
            out = model.apply(
                {"params": params, **rest},
                x,
                train,
                rngs=rngs,
                mutable=["batch_stats"] if train else False,
            )
        logits = (out[0] if train else out)[0]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, outputs

    _, probe = jax.eval_shape(lambda p: run(p, None), params)
    names = list(order)
    if not names:
        raise ValueError(f"no layer of {[t.__name__ for t in layer_types]} is called by the model")
    taps0 = {n: jnp.zeros(probe[n].shape, probe[n].dtype) for n in names}

    (_, outputs), (g_params, g_taps) = jax.value_and_grad(run, argnums=(0, 1), has_aux=True)(
        params, taps0
    )
    flat_g = flatten_dict(dict(g_params))
    result = []
    for depth, name in enumerate(names, 1):
        path = (*name.split("#")[0].split("/"), "kernel")
        wg = flat_g.get(path)
        result.append(
            LayerSignal(
                name=name,
                depth=depth,
                activation_std=float(jnp.std(outputs[name])),
                grad_std=float(jnp.std(g_taps[name])),
                weight_grad_std=None if wg is None else float(jnp.std(wg)),
            )
        )
    return result
