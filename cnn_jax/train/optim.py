"""Optimizers and learning-rate schedules by name, from an ``ml_collections`` config.

Config keys (all under ``config.optim``):

* ``name``: ``'sgd'`` (``momentum``, ``nesterov``), ``'adam'``, ``'adamw'``,
  ``'rmsprop'`` (``decay``, ``momentum``, ``eps``), ``'adadelta'`` (``decay`` is its
  rho, ``eps``; Kim 2014: rho 0.95, eps 1e-6, learning rate 1.0);
* ``learning_rate`` (peak) and ``schedule``: ``'constant'``, ``'cosine'`` (to
  ``end_lr_factor`` of the peak), ``'step'`` (multiply by ``decay_factor`` at each of
  ``milestones``, given in epochs: "divide by 10 at epochs 30, 60, 90"),
  ``'exponential'`` (``decay_factor`` per epoch); all with ``warmup_epochs`` of linear
  warm-up;
* ``reduce_on_plateau``: "divide by 10 when the validation accuracy plateaus", a
  scale on the updates that the loop sets after each evaluation
  (:mod:`cnn_jax.train.plateau`), stacked on any schedule;
* ``weight_decay``: L2 decay added to the gradient for SGD/RMSProp/Adam (applied to
  kernels only: arrays with more than one dimension) and the decoupled decay of
  AdamW (likewise masked);
* ``grad_clip_norm``: clip the global gradient norm first (``None`` for none);
* ``max_norm`` (``None`` for none) and ``max_norm_params``: the max-norm constraint of
  Kim (2014) and Hinton et al. (2012), a projection after every step: each column (the
  weights into one output unit, the kernel's last axis) of a parameter whose
  ``'/'``-joined path matches a pattern of ``max_norm_params`` (``fnmatch``) is rescaled
  to L2 norm ``max_norm`` if it is longer. It is the last transform of the chain
  (:func:`max_norm_projection`): its update takes the stepped parameters to their
  projection, so the training loop needs nothing else.
"""

from __future__ import annotations

import fnmatch
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from cnn_jax.train.config import OPTIM_KEYS

__all__ = [
    "OPTIMIZERS",
    "OPTIM_KEYS",
    "SCHEDULES",
    "make_optimizer",
    "make_schedule",
    "max_norm_projection",
]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adadelta")
SCHEDULES = ("constant", "cosine", "step", "exponential")


def make_schedule(optim: ConfigDict, steps_per_epoch: int, num_steps: int) -> optax.Schedule:
    """Builds the learning-rate schedule.

    Args:
      optim: the ``config.optim`` block.
      steps_per_epoch: optimizer steps in one epoch (epochs in the config are converted).
      num_steps: total training steps.

    Returns:
      A function from the step count to the learning rate.

    Raises:
      ValueError: for an unknown schedule or invalid values.
    """
    name = optim.get("schedule", "constant")
    lr = float(optim.learning_rate)
    if not lr > 0:
        raise ValueError(f"`optim.learning_rate` (={lr}) must be positive")
    warmup = round(float(optim.get("warmup_epochs", 0.0)) * steps_per_epoch)
    if warmup < 0 or (warmup > 0 and warmup >= num_steps):
        raise ValueError(
            f"`optim.warmup_epochs` gives {warmup} warm-up steps, which must be "
            f"fewer than the {num_steps} training steps"
        )
    rest = max(num_steps - warmup, 1)
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "cosine":
        main = optax.cosine_decay_schedule(lr, rest, alpha=float(optim.get("end_lr_factor", 0.0)))
    elif name == "step":
        factor = float(optim.get("decay_factor", 0.1))
        milestones = list(optim.get("milestones", ()))
        if sorted(milestones) != milestones or any(m <= 0 for m in milestones):
            raise ValueError(
                f"`optim.milestones` (={milestones}) must be increasing positive epochs"
            )
        boundaries = {int(m * steps_per_epoch) - warmup: factor for m in milestones}
        main = optax.piecewise_constant_schedule(lr, boundaries)
    elif name == "exponential":
        main = optax.exponential_decay(lr, steps_per_epoch, float(optim.get("decay_factor", 0.97)))
    else:
        raise ValueError(f"`optim.schedule` (={name!r}) must be one of {SCHEDULES}")
    if warmup:
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
    return main


def _kernels_only(params: Any) -> Any:
    return jax.tree.map(lambda p: p.ndim > 1, params)


class _EmptyState(NamedTuple):
    """The projection keeps no state."""


def max_norm_projection(max_norm: float, patterns: tuple[str, ...]) -> optax.GradientTransformation:
    """Updates that end at the max-norm projection of the stepped parameters.

    Put it last in a chain: for every parameter ``p`` whose ``'/'``-joined path matches
    one of ``patterns`` (``fnmatch``), with ``q = p + u`` the parameter after the incoming
    update ``u``, the returned update is ``project(q) - p``, where ``project`` rescales
    each column ``q[..., j]`` whose L2 norm exceeds ``max_norm`` to norm ``max_norm``.
    Other parameters pass unchanged.

    Args:
      max_norm: the largest column norm.
      patterns: path patterns, e.g. ``('output/kernel',)``.

    Returns:
      The transformation (it needs ``params`` in ``update``).

    Raises:
      ValueError: for a non-positive ``max_norm`` or no patterns.
    """
    if not float(max_norm) > 0:
        raise ValueError(f"`optim.max_norm` (={max_norm!r}) must be positive or None")
    patterns = tuple(patterns)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"`optim.max_norm_params` (={patterns!r}) must be non-empty strings")

    def init(params: Any) -> _EmptyState:
        del params
        return _EmptyState()

    def update(updates: Any, state: _EmptyState, params: Any = None) -> tuple[Any, _EmptyState]:
        if params is None:
            raise ValueError("max_norm_projection needs `params` in update()")

        def project(path: tuple[Any, ...], u: Any, p: Any) -> Any:
            name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
            if not any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
                return u
            q = p + u
            axes = tuple(range(q.ndim - 1))
            norms = jnp.sqrt(jnp.sum(jnp.square(q), axis=axes, keepdims=True))
            scale = jnp.minimum(1.0, max_norm / jnp.maximum(norms, 1e-12))
            return (q * scale - p).astype(u.dtype)

        return jax.tree_util.tree_map_with_path(project, updates, params), state

    return optax.GradientTransformation(init, update)


def make_optimizer(
    optim: ConfigDict, steps_per_epoch: int, num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Builds the optimizer chain and its schedule from ``config.optim``.

    Args:
      optim: the ``config.optim`` block (see the module docstring).
      steps_per_epoch: optimizer steps per epoch.
      num_steps: total training steps.

    Returns:
      ``(optimizer, schedule)``.

    Raises:
      ValueError: for an unknown optimizer or invalid hyper-parameters.
    """
    name = optim.get("name", "sgd")
    schedule = make_schedule(optim, steps_per_epoch, num_steps)
    wd = float(optim.get("weight_decay", 0.0))
    if wd < 0:
        raise ValueError(f"`optim.weight_decay` (={wd}) must be non-negative")
    chain = []
    clip = optim.get("grad_clip_norm", None)
    if clip is not None:
        if not float(clip) > 0:
            raise ValueError(f"`optim.grad_clip_norm` (={clip}) must be positive or None")
        chain.append(optax.clip_by_global_norm(float(clip)))
    if name == "sgd":
        momentum = float(optim.get("momentum", 0.9))
        if wd:
            chain.append(optax.add_decayed_weights(wd, mask=_kernels_only))
        chain.append(
            optax.sgd(
                schedule, momentum=momentum or None, nesterov=bool(optim.get("nesterov", False))
            )
        )
    elif name in ("adam", "adamw"):
        b1, b2 = float(optim.get("b1", 0.9)), float(optim.get("b2", 0.999))
        eps = float(optim.get("eps", 1e-8))
        if name == "adamw":
            chain.append(optax.adamw(schedule, b1, b2, eps, weight_decay=wd, mask=_kernels_only))
        else:
            if wd:
                chain.append(optax.add_decayed_weights(wd, mask=_kernels_only))
            chain.append(optax.adam(schedule, b1, b2, eps))
    elif name == "rmsprop":
        if wd:
            chain.append(optax.add_decayed_weights(wd, mask=_kernels_only))
        chain.append(
            optax.rmsprop(
                schedule,
                decay=float(optim.get("decay", 0.9)),
                eps=float(optim.get("eps", 1e-8)),
                momentum=float(optim.get("momentum", 0.0)) or None,
            )
        )
    elif name == "adadelta":
        if wd:
            chain.append(optax.add_decayed_weights(wd, mask=_kernels_only))
        chain.append(
            optax.adadelta(
                schedule, rho=float(optim.get("decay", 0.9)), eps=float(optim.get("eps", 1e-6))
            )
        )
    else:
        raise ValueError(f"`optim.name` (={name!r}) must be one of {OPTIMIZERS}")
    max_norm = optim.get("max_norm", None)
    if max_norm is not None:
        plateau = optim.get("reduce_on_plateau", None)
        if plateau is not None and plateau.get("metric") is not None:
            raise ValueError(
                "`optim.max_norm` cannot be combined with `optim.reduce_on_plateau` (the "
                "plateau scale multiplies the updates after the projection)"
            )
        chain.append(max_norm_projection(float(max_norm), optim.get("max_norm_params", ())))
    return optax.chain(*chain), schedule
