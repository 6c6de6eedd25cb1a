"""Transfer learning: off-the-shelf features with a linear probe, and partial fine-tuning.

* ``extract_features`` runs a frozen model (inference mode) to a named entry of its
  ``features`` dict; ``fit_logistic_regression`` fits a multinomial logistic-regression
  probe on them with L-BFGS (Razavian et al. 2014, "CNN features off-the-shelf").
* ``freeze_labels`` / ``partition_optimizer`` route the parameters whose names match
  a pattern to ``optax.set_to_zero()`` with ``optax.multi_transform``, and
  ``frozen_batch_norm`` keeps the batch normalization layers under those names in
  inference mode while the rest trains (their running statistics neither used from
  the batch nor updated), as in Yosinski et al. 2014 / the Keras fine-tuning guide.

Patterns are regular expressions searched (``re.search``) in the ``/``-joined path of a
parameter or module, e.g. ``"^(conv1|bn1|layer1|layer2)"`` or ``"^features_"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from cnn_jax.layers import BatchNorm

__all__ = [
    "LinearProbe",
    "extract_features",
    "fit_logistic_regression",
    "freeze_labels",
    "frozen_batch_norm",
    "partition_optimizer",
]

Array = Any


def _check_patterns(patterns: Sequence[str], name: str) -> tuple[str, ...]:
    if isinstance(patterns, str):
        raise TypeError(f"`{name}` (={patterns!r}) must be a sequence of patterns, not a string")
    out = tuple(patterns)
    for p in out:
        try:
            re.compile(p)
        except (re.error, TypeError) as e:
            raise ValueError(f"`{name}` holds an invalid regular expression {p!r}: {e}") from e
    return out


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(re.search(p, path) for p in patterns)


def freeze_labels(params: Any, patterns: Sequence[str]) -> Any:
    """Labels each parameter ``'frozen'`` or ``'trainable'`` by its path.

    Args:
      params: the parameter tree.
      patterns: regular expressions; a parameter whose ``/``-joined path matches one is
        frozen.

    Returns:
      A tree of labels with the structure of ``params``.

    Raises:
      ValueError: for an invalid pattern or one that matches no parameter (a typo
        would otherwise silently train everything).
    """
    patterns = _check_patterns(patterns, "patterns")
    flat = traverse_util.flatten_dict(params, sep="/")
    for p in patterns:
        if not any(re.search(p, k) for k in flat):
            some = ", ".join(sorted({k.split("/")[0] for k in flat})[:12])
            raise ValueError(
                f"freeze pattern {p!r} matches no parameter; top-level modules: {some}"
            )
    labels = {k: "frozen" if _matches(k, patterns) else "trainable" for k in flat}
    return traverse_util.unflatten_dict(labels, sep="/")


def partition_optimizer(
    tx: optax.GradientTransformation, params: Any, patterns: Sequence[str]
) -> optax.GradientTransformation:
    """``tx`` for the trainable parameters, zero updates for the frozen ones.

    Args:
      tx: the optimizer of the trainable part (its weight decay, momentum, ... apply
        only there).
      params: the parameter tree (for the labels).
      patterns: see ``freeze_labels``.

    Returns:
      An ``optax.multi_transform``.
    """
    labels = freeze_labels(params, patterns)
    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)


@contextlib.contextmanager
def frozen_batch_norm(patterns: Sequence[str]) -> Iterator[None]:
    """Runs the ``cnn_jax.layers.BatchNorm`` modules under ``patterns`` in inference mode.

    Inside the context (it acts while a model is traced or applied), a ``BatchNorm``
    whose module path, ``/``-joined and followed by ``/`` (``"layer1_0/bn1/"``), matches
    a pattern is called with ``train=False``: it normalizes with its running statistics
    and does not update them. The trailing ``/`` lets the patterns given for the
    parameters (``"^bn1/"`` matches ``"bn1/scale"``) select their module too.

    Args:
      patterns: regular expressions on module paths (e.g. those given to
        ``partition_optimizer``: a parameter path begins with its module's path).

    Yields:
      Nothing.
    """
    patterns = _check_patterns(patterns, "patterns")

    def interceptor(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        if (
            patterns
            and isinstance(module, BatchNorm)
            and context.method_name == "__call__"
            and _matches("/".join(module.path) + "/", patterns)
        ):
            if len(args) > 1:
                args = (args[0], False, *args[2:])
            else:
                kwargs = {**kwargs, "train": False}
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        yield


def extract_features(
    model: nn.Module,
    variables: Any,
    images: Array,
    feature: str,
    *,
    batch_size: int = 256,
    preprocess: Callable[[Array], Array] | None = None,
) -> np.ndarray:
    """Runs a frozen model (inference mode) and returns one of its features.

    Args:
      model: a model returning ``(logits, features)``.
      variables: its variables.
      images: ``(N, H, W, C)`` inputs (numpy or jax).
      feature: a key of the model's ``features`` dict, or ``"logits"``.
      batch_size: examples per forward pass (the last batch is padded, so one
        compilation serves all).
      preprocess: applied to each batch on the device first (e.g. uint8 -> float).

    Returns:
      ``(N, ...)`` float32 features, spatial maps flattened to ``(N, D)`` only if the
      caller does it: the feature's own shape is kept.

    Raises:
      ValueError: for a bad ``batch_size`` or an unknown feature (the message lists
        the model's features).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` (={batch_size!r}) must be a positive int")
    n = len(images)
    if n == 0:
        raise ValueError("`images` is empty")

    def probe(x: Array) -> Any:
        if preprocess is not None:
            x = preprocess(x)
        return model.apply(variables, x, train=False)

    _, shapes = jax.eval_shape(probe, jnp.asarray(images[:1]))
    if feature != "logits" and feature not in shapes:
        raise ValueError(
            f"`feature` (={feature!r}) is not a feature of the model; it has: "
            f"{', '.join(['logits', *shapes])}"
        )

    @jax.jit
    def run(x: Array) -> Array:
        logits, feats = probe(x)
        return (logits if feature == "logits" else feats[feature]).astype(jnp.float32)

    size = min(batch_size, n)
    out = []
    for start in range(0, n, size):
        chunk = np.asarray(images[start : start + size])
        valid = len(chunk)
        if valid < size:
            chunk = np.concatenate([chunk, np.zeros((size - valid, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(run(chunk))[:valid])
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class LinearProbe:
    """A fitted multinomial logistic regression on standardized features.

    Attributes:
      weights: ``(D, K)``.
      bias: ``(K,)``.
      mean: the training features' mean, ``(D,)``.
      scale: their standard deviation (1 where constant), ``(D,)``.
      l2: the L2 penalty it was fitted with.
      iterations: L-BFGS iterations run.
    """

    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    l2: float
    iterations: int

    def logits(self, features: Array) -> np.ndarray:
        """``(N, D)`` features -> ``(N, K)`` logits."""
        x = (np.asarray(features, np.float32).reshape(len(features), -1) - self.mean) / self.scale
        return x @ self.weights + self.bias

    def predict(self, features: Array) -> np.ndarray:
        """The predicted classes."""
        return np.argmax(self.logits(features), axis=-1)

    def accuracy(self, features: Array, labels: Array) -> float:
        """The fraction of ``labels`` predicted."""
        return float(np.mean(self.predict(features) == np.asarray(labels)))


def fit_logistic_regression(
    features: Array,
    labels: Array,
    *,
    num_classes: int | None = None,
    l2: float = 1e-4,
    max_iterations: int = 500,
    tolerance: float = 1e-6,
) -> LinearProbe:
    """Fits multinomial logistic regression with L-BFGS (``optax.lbfgs``).

    Minimizes ``mean(cross_entropy(x W + b, y)) + l2/2 * |W|^2`` over standardized
    features (flattened to ``(N, D)``); the problem is strictly convex for ``l2 > 0``.

    Args:
      features: ``(N, ...)`` features.
      labels: ``(N,)`` integer classes.
      num_classes: ``K`` (default ``max(labels) + 1``).
      l2: the L2 penalty on ``W``, ``>= 0``.
      max_iterations: the L-BFGS iteration cap.
      tolerance: stop when the gradient norm falls below this.

    Returns:
      The fitted ``LinearProbe``.

    Raises:
      ValueError: for mismatched lengths, labels outside ``[0, num_classes)``, or bad
        hyper-parameters.
    """
    x = np.asarray(features, np.float32)
    x = x.reshape(len(x), -1)
    y = np.asarray(labels)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"`features` ({len(x)} rows) and `labels` ({len(y)}) must have the same, "
            "non-zero length"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"`labels` must be integers, got dtype {y.dtype}")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"`labels` must be in [0, {k}), got [{y.min()}, {y.max()}]")
    if not l2 >= 0:
        raise ValueError(f"`l2` (={l2!r}) must be >= 0")
    if not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"`max_iterations` (={max_iterations!r}) must be a positive int")
    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    xs = jnp.asarray((x - mean) / scale)
    onehot = jax.nn.one_hot(jnp.asarray(y), k)

    def loss(p: dict[str, Array]) -> Array:
        logits = xs @ p["w"] + p["b"]
        ce = optax.softmax_cross_entropy(logits, onehot).mean()
        return ce + 0.5 * l2 * jnp.sum(p["w"] ** 2)

    params = {"w": jnp.zeros((x.shape[1], k)), "b": jnp.zeros((k,))}
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    @jax.jit
    def run(params: Any) -> tuple[Any, Array]:
        def step(carry: Any) -> Any:
            p, state, i = carry
            value, grad = value_and_grad(p, state=state)
            updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss)
            return optax.apply_updates(p, updates), state, i + 1

        def go_on(carry: Any) -> Array:
            _, state, i = carry
            g = optax.tree_utils.tree_get(state, "grad")
            return (i == 0) | ((i < max_iterations) & (optax.tree.norm(g) >= tolerance))

        p, _, i = jax.lax.while_loop(go_on, step, (params, opt.init(params), 0))
        return p, i

    fitted, iterations = run(params)
    return LinearProbe(
        weights=np.asarray(fitted["w"]),
        bias=np.asarray(fitted["b"]),
        mean=mean,
        scale=scale,
        l2=float(l2),
        iterations=int(iterations),
    )
