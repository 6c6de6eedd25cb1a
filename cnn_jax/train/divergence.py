"""Stopping a diverged run: non-finite losses, gradients or parameters."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__ = ["TrainingDivergedError", "check_finite", "check_params_finite"]


class TrainingDivergedError(FloatingPointError):
    """Raised when the loss or the gradient becomes NaN or infinite."""


def check_finite(pending: list[tuple[int, dict[str, Any]]], last_ckpt: int | None) -> None:
    """Raises if a step's ``loss`` or ``grad_norm`` is not finite.

    Args:
      pending: ``(step, host metrics)`` pairs.
      last_ckpt: the last checkpoint written, named in the error (None: none).

    Raises:
      TrainingDivergedError: naming the step, the values and the last good checkpoint.
    """
    for step, m in pending:
        bad = [k for k in ("loss", "grad_norm") if not math.isfinite(float(m[k]))]
        if bad:
            where = (
                f"the last good checkpoint is step {last_ckpt}"
                if last_ckpt is not None
                else "no checkpoint was written"
            )
            raise TrainingDivergedError(
                f"non-finite {' and '.join(bad)} at step {step} "
                f"(loss={float(m['loss'])}, grad_norm={float(m['grad_norm'])}); training "
                f"stopped, {where}. Lower the learning rate or enable gradient clipping "
                "(config.optim.grad_clip_norm)."
            )


def check_params_finite(params: Any, step: int, last_ckpt: int | None) -> None:
    """Raises if a parameter (a host tree) holds a non-finite value after ``step``.

    Raises:
      TrainingDivergedError: naming the first bad parameters and the last good checkpoint.
    """
    bad = [
        jax.tree_util.keystr(path)
        for path, x in jax.tree_util.tree_leaves_with_path(params)
        if not np.all(np.isfinite(x))
    ]
    if bad:
        where = f"step {last_ckpt}" if last_ckpt is not None else "none was written"
        raise TrainingDivergedError(
            f"non-finite parameters {bad[:5]} after step {step}; training stopped, the "
            f"last good checkpoint is {where}."
        )
