"""The evaluation pass of the training loop: sums over the test split, then means."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from cnn_jax.train import build
from cnn_jax.train.parallel import Parallel
from cnn_jax.train.state import TrainState

__all__ = ["evaluate", "log_metrics"]


def evaluate(
    p_eval: Any,
    state: TrainState,
    eval_iter: Any,
    input_key: str,
    par: Parallel,
    summarize: Any = None,
    max_batches: int | None = None,
) -> dict[str, float]:
    """One pass over the test split (or its first batches); sums stay on the device.

    Args:
      p_eval: the compiled evaluation step (``cnn_jax.train.steps.eval_step`` under
        ``jit`` or ``pmap``), ``(state, batch) -> sums``.
      state: the state to evaluate (replicated or sharded as ``p_eval`` expects).
      eval_iter: the test pipeline (restarted at its first batch).
      input_key: the batch key the model reads (``image``, ``audio``, ...).
      par: the run's data-parallel helper (batch placement, host transfer).
      summarize: ``Loss.summarize`` of the run's loss, or None.
      max_batches: read only this many batches, evenly spaced over the split
        (``config.eval_steps``; test splits are stored in order, e.g. by class, so the
        first batches would be a biased sample), the same batch indices on every
        process; None: all of them.

    Returns:
      ``loss``, ``accuracy``, ``top5_accuracy`` (means over the real examples),
      ``count``, and the loss's own metrics.

    The loss's extra sums (``Loss.eval_sums``, e.g. a confusion matrix) are summed like
    the others and turned into metrics by ``summarize``.
    """
    eval_iter.step = 0
    batches: Any = eval_iter
    steps = eval_iter.steps_per_epoch
    if max_batches is not None and max_batches < steps:
        picks = np.linspace(0, steps - 1, max_batches).round().astype(int)
        batches = (eval_iter.batch_at(int(i)) for i in picks)
    totals = None
    for batch in batches:
        out = p_eval(state, par.batch(build.model_inputs(batch, input_key)))
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    host = par.host(totals)
    basic = ("loss", "top1", "top5", "count")
    totals = {k: float(host[k]) for k in basic}
    count = max(totals["count"], 1.0)
    metrics = {
        "loss": totals["loss"] / count,
        "accuracy": totals["top1"] / count,
        "top5_accuracy": totals["top5"] / count,
        "count": totals["count"],
    }
    extra = {k: np.asarray(v) for k, v in host.items() if k not in basic}
    if extra and summarize is not None:
        metrics.update(summarize(extra))
    return metrics


def log_metrics(step: int, metrics: dict[str, float]) -> None:
    """Logs an evaluation's main numbers (and mIoU for dense prediction) at INFO."""
    logging.info(
        "step %d: test loss %.4f, top-1 %.2f%%, top-5 %.2f%%",
        step,
        metrics["loss"],
        100 * metrics["accuracy"],
        100 * metrics["top5_accuracy"],
    )
    if "miou" in metrics:
        logging.info(
            "step %d: mIoU %.2f%%, pixel accuracy %.2f%%",
            step,
            100 * metrics["miou"],
            100 * metrics["pixel_accuracy"],
        )
