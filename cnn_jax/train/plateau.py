"""Reduce the learning rate when a validation metric stops improving.

"Divide the learning rate by 10 when the validation accuracy stops improving"
(Krizhevsky et al. 2012; He et al. 2016), as Keras' ``ReduceLROnPlateau``: after each
evaluation the loop calls :func:`update_plateau` with the metric; after ``patience``
evaluations in a row without an improvement larger than ``min_delta`` the scale of the
learning rate is multiplied by ``factor`` (not below ``min_scale``), and the next
``cooldown`` evaluations are not counted. The train step multiplies the optimizer's
updates by the scale, which scales the learning rate of SGD, Adam, AdamW (its decoupled
weight decay included) and RMSProp alike, on top of any schedule.

The state (:func:`init_plateau`: five scalars) lives in ``TrainState.plateau`` and so in
every checkpoint: a resumed run continues with the same scale, best value and counts.

Config (``config.optim.reduce_on_plateau``): ``metric`` (``'test_accuracy'``,
``'test_top5_accuracy'`` or ``'test_loss'``; None turns it off), ``mode`` (``'max'`` or
``'min'``; default: ``'min'`` for the loss, ``'max'`` for accuracies), ``factor``,
``patience``, ``min_delta``, ``cooldown``, ``min_scale``.

Not ``optax.contrib.reduce_on_plateau``: that transformation sits in the optimizer
chain and sees only the value passed to every ``update`` (the training loss, or an
average of ``accumulation_size`` of them); the validation metric exists on the host
once per evaluation, it minimizes only, and it needs a positive tolerance. The logic
here is a few lines of host code on the evaluation results, tested against a
hand-computed sequence, and the scale is one multiply in the step.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

__all__ = ["METRICS", "PlateauOptions", "init_plateau", "plateau_options", "update_plateau"]

#: Metrics the loop can watch: the evaluation's, as in the run's summary.
METRICS = ("test_accuracy", "test_top5_accuracy", "test_loss")


@dataclasses.dataclass(frozen=True)
class PlateauOptions:
    """The checked ``config.optim.reduce_on_plateau`` block (see the module docstring)."""

    metric: str
    mode: str
    factor: float
    patience: int
    min_delta: float
    cooldown: int
    min_scale: float


def _int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def plateau_options(optim: Any) -> PlateauOptions | None:
    """Reads and checks ``optim.reduce_on_plateau``.

    Args:
      optim: the ``config.optim`` block.

    Returns:
      The options, or None when no ``metric`` is set (reduce-on-plateau off).

    Raises:
      ValueError: naming the key and the value for an invalid setting.
      TypeError: if the block is not a mapping.
    """
    block = optim.get("reduce_on_plateau") if hasattr(optim, "get") else None
    if block is None:
        return None
    if not hasattr(block, "get"):
        raise TypeError(
            f"`optim.reduce_on_plateau` (={block!r}) must be a block with a `metric`, e.g. "
            "--config.optim.reduce_on_plateau.metric=test_accuracy"
        )
    from cnn_jax.train.config import default_config  # the defaults of missing keys

    block = {**default_config().optim.reduce_on_plateau.to_dict(), **dict(block.items())}
    metric = block["metric"]
    if metric is None:
        return None
    if metric not in METRICS:
        raise ValueError(
            f"`optim.reduce_on_plateau.metric` (={metric!r}) must be one of {METRICS} or None"
        )
    mode = block["mode"] or ("min" if metric.endswith("loss") else "max")
    if mode not in ("max", "min"):
        raise ValueError(f"`optim.reduce_on_plateau.mode` (={mode!r}) must be 'max' or 'min'")
    factor = block["factor"]
    if not (isinstance(factor, numbers.Real) and 0 < factor < 1):
        raise ValueError(f"`optim.reduce_on_plateau.factor` (={factor!r}) must be in (0, 1)")
    for key, low in (("patience", 1), ("cooldown", 0)):
        value = block[key]
        if not _int(value) or value < low:
            raise ValueError(
                f"`optim.reduce_on_plateau.{key}` (={value!r}) must be an int >= {low}"
            )
    for key in ("min_delta", "min_scale"):
        value = block[key]
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise ValueError(
                f"`optim.reduce_on_plateau.{key}` (={value!r}) must be a finite number >= 0"
            )
    return PlateauOptions(
        metric=metric,
        mode=mode,
        factor=float(factor),
        patience=int(block["patience"]),
        min_delta=float(block["min_delta"]),
        cooldown=int(block["cooldown"]),
        min_scale=float(block["min_scale"]),
    )


def init_plateau() -> dict[str, np.ndarray]:
    """The state before any evaluation: scale 1, no counts.

    Returns:
      ``{'scale', 'best'}`` (float32 scalars) and ``{'bad', 'cooldown', 'seen'}``
      (int32): the learning-rate scale, the best value seen, the evaluations in a row
      without improvement, the evaluations still to ignore after a drop, and the
      finite values seen (``best`` means nothing while it is 0). All finite, so that
      processes can check they hold equal copies.
    """
    return {
        "scale": np.float32(1.0),
        "best": np.float32(0.0),
        "bad": np.int32(0),
        "cooldown": np.int32(0),
        "seen": np.int32(0),
    }


def update_plateau(
    state: dict[str, Any], value: float, options: PlateauOptions
) -> dict[str, np.ndarray]:
    """One evaluation's step of reduce-on-plateau.

    In order: an improvement (the first finite value, or one beyond ``best`` by more
    than ``min_delta`` in the direction of ``mode``) resets ``bad`` and records ``best``,
    else ``bad`` grows by one; during a cooldown the evaluation is not counted (``bad``
    stays 0); when ``bad`` reaches ``patience`` the scale is multiplied by ``factor``
    (not below ``min_scale``), ``bad`` restarts and the cooldown begins.

    Args:
      state: the current state (:func:`init_plateau`'s keys; arrays or numbers).
      value: the watched metric at this evaluation.
      options: the settings.

    Returns:
      The new state, numpy scalars of the same dtypes.
    """
    scale = np.float32(np.asarray(state["scale"]))
    best = np.float32(np.asarray(state["best"]))
    bad = int(np.asarray(state["bad"]))
    cooldown = int(np.asarray(state["cooldown"]))
    seen = int(np.asarray(state["seen"]))
    v = np.float32(value)
    if not math.isfinite(float(v)):
        improved = False
    elif options.mode == "max":
        improved = seen == 0 or float(v) > float(best) + options.min_delta
    else:
        improved = seen == 0 or float(v) < float(best) - options.min_delta
    if improved:
        best, bad = v, 0
    else:
        bad += 1
    if cooldown > 0:
        cooldown -= 1
        bad = 0
    if bad >= options.patience:
        scale = np.float32(max(scale * np.float32(options.factor), np.float32(options.min_scale)))
        bad, cooldown = 0, options.cooldown
    return {
        "scale": np.float32(scale),
        "best": np.float32(best),
        "bad": np.int32(bad),
        "cooldown": np.int32(cooldown),
        "seen": np.int32(seen + math.isfinite(float(v))),
    }
