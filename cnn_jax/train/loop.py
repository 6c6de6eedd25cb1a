r"""``train_and_evaluate(config, workdir)``: the whole training run, callable from Colab.

Data parallel over every device: by default ``jit`` over a one-axis device mesh with
the batch sharded by ``NamedSharding`` (XLA inserts the cross-device reductions, so
BatchNorm statistics are global without an axis name); with ``config.parallel =
'pmap'``, ``pmap`` with explicit ``pmean``\\s. Multi-host runs call
``jax.distributed.initialize`` first (``experiments/main.py`` does); each process then
feeds its own slice of every global batch. Without stochastic layers the two modes
agree to float tolerance (tested); with dropout or augmentation, ``pmap`` draws a key
per device, so its random masks differ from ``jit``'s (which draws them for the global
batch, independently of the device count), though they have the same distribution.

Resumption: the state is checkpointed every ``config.checkpoint_every_steps`` steps and
at the end; a run restarted in the same ``workdir`` restores the newest checkpoint
and continues with the same batches (the input pipeline starts at the restored step)
and the same dropout keys (``fold_in(key, step)``), so an interrupted run ends with
the same parameters as an uninterrupted one; the training metrics not yet logged are
saved with each checkpoint, so the logs match too. A damaged newest checkpoint (its
SHA-256 does not match) is set aside for the newest intact one; a failed save stops the
run at once (``cnn_jax.train.checkpoint``). The config is recorded in the workdir, and a
resume that changes the trajectory is refused unless ``config.allow_config_change``
(``cnn_jax.train.config_record``); a finished workdir run again returns its final
evaluation. SIGTERM (preemption) saves a checkpoint and returns (all processes agree on
it first). A non-finite loss or gradient stops
training with a ``TrainingDivergedError`` (a ``FloatingPointError``) naming the step.
A checkpoint is only written once its parameters are known to be good: after the next
step's loss and gradient, computed from them, came out finite (at the end of training
and on preemption, once the parameters themselves are finite); so a blown-up update
never lands in the checkpoint a restart resumes from.

One run per workdir: the run holds ``<workdir>/.lock`` from start to end
(``cnn_jax.train.workdir_lock``). With ``config.optim.reduce_on_plateau.metric`` set, each
evaluation may lower the learning-rate scale (``cnn_jax.train.plateau``), which is part
of the state and of every checkpoint.

The run, in order: check the config, lock the workdir, set up (data, model, optimizer,
the fresh, loaded or restored state, devices, compiled steps), train (steps, logs,
evaluations, checkpoints), finish (the summary). The pieces live beside this module:
``setup`` (everything before the first step), ``config``, ``build``, ``parallel``,
``evaluation``, ``divergence``, ``plateau``, ``workdir_lock``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from cnn_jax.train import build, evaluation
from cnn_jax.train.config import KNOWN_KEYS, REQUIRED, validate_config
from cnn_jax.train.divergence import TrainingDivergedError, check_finite, check_params_finite
from cnn_jax.train.metrics import Progress
from cnn_jax.train.parallel import Preemption, agreed
from cnn_jax.train.plateau import update_plateau
from cnn_jax.train.setup import RunSetup, set_up
from cnn_jax.train.workdir_lock import WorkdirLock

__all__ = [
    "KNOWN_KEYS",
    "REQUIRED",
    "TrainingDivergedError",
    "train_and_evaluate",
    "validate_config",
]


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains and evaluates a model as the config says, checkpointing into ``workdir``.

    Progress (the start, each evaluation, preemption, the summary) is logged with
    ``absl.logging`` at INFO by the first process (in a notebook, call
    ``absl.logging.set_verbosity('info')`` to see it).

    Args:
      config: the experiment config (``cnn_jax.train.config.default_config`` lists
        every key).
      workdir: the run's directory (checkpoints, metrics, TensorBoard events); a run
        restarted with the same directory resumes. One run at a time: the run holds
        ``<workdir>/.lock`` (``cnn_jax.train.workdir_lock``).

    Returns:
      A summary: final test metrics, steps, parameter count, times.

    Raises:
      ValueError: for an invalid config or a missing data set.
      TrainingDivergedError: if the loss or the gradient becomes non-finite.
      WorkdirLockedError: if another run uses ``workdir``.
    """
    validate_config(config)
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    with WorkdirLock(workdir, jax.process_index(), jax.process_count()):
        run = set_up(config, workdir)
        loop = _Loop(run)
        try:
            loop.train()
        finally:
            run.ckpt.close()
            run.writer.close()
    return _finish(run, loop)


class _Loop:
    """The training loop: steps, logs, evaluations and checkpoints, in order.

    A checkpoint is written only once its parameters are known to be good: when the
    next step's loss and gradient, computed from them, are finite (or, at the end of
    training and on preemption, when the parameters themselves are finite).
    """

    def __init__(self, run: RunSetup):
        self.run = run
        self.state = run.state
        self.step = run.start
        self.pending: list[tuple[int, dict[str, Any]]] = []  # metrics not yet checked
        self.restored = list(run.pending)  # host metrics not yet logged, from the checkpoint
        self.last_ckpt = run.ckpt.latest_step()
        self.held: tuple[int, Any] | None = None  # a checkpoint waiting for the next step
        self.compile_s: float | None = None
        self.train_time = 0.0
        self.t_window, self.n_window = time.perf_counter(), 0
        self.test_metrics: dict[str, float] = {}
        self.preempted = False
        self.progress = Progress(
            run.num_steps, run.start, enabled=run.lead and run.config.get("progress_bar", True)
        )

    def train(self) -> None:
        """Runs the steps from the start step to the last, or to a preemption."""
        run = self.run
        if self.step >= run.num_steps:  # a finished workdir run again: its final evaluation
            self.test_metrics = evaluation.evaluate(
                run.p_eval, self.state, run.eval_iter, run.input_key, run.par, run.summarize
            )
        run.train_iter.step = self.step
        run.train_iter.num_steps = None  # the loop counts the steps
        batches = run.par.batches(build.model_inputs(b, run.input_key) for b in run.train_iter)
        with Preemption() as preemption:
            while self.step < run.num_steps:
                self._train_step(next(batches))
                last = self.step == run.num_steps
                if self.step % run.log_every == 0 or last:
                    self._log()
                if self.step % run.eval_every == 0 or last:
                    self._evaluate(whole=last)
                sync = self.step % run.log_every == 0 or self.step % run.ckpt_every == 0
                stop = agreed(preemption.requested, run.process[1], sync)
                if stop or self.step % run.ckpt_every == 0 or last:
                    self._checkpoint(now=stop or last)
                if stop:
                    self.preempted = True
                    if run.lead:
                        logging.warning(
                            "SIGTERM: saved checkpoint %d, exiting; rerun to resume.", self.step
                        )
                    break

    def _train_step(self, batch: dict[str, Any]) -> None:
        run = self.run
        if self.compile_s is None:
            t0 = time.perf_counter()
            run.p_train = run.p_train.lower(self.state, batch).compile()
            self.compile_s = time.perf_counter() - t0
            self.t_window = time.perf_counter()
        self.state, metrics = run.p_train(self.state, batch)
        self.step += 1
        self.n_window += 1
        self.pending.append((self.step, metrics))
        if self.held is not None:
            check_finite([(self.step, run.par.host(metrics))], self.last_ckpt)
            run.ckpt.save(*self.held)
            self.last_ckpt, self.held = self.held[0], None

    def _log(self) -> None:
        """Checks and writes the mean training metrics since the last log."""
        run = self.run
        host = self.restored + [(s, run.par.host(m)) for s, m in self.pending]
        check_finite(host, self.last_ckpt)
        self.pending.clear()
        self.restored = []
        elapsed = time.perf_counter() - self.t_window
        self.train_time += elapsed
        means = {k: float(np.mean([m[k] for _, m in host])) for k in host[0][1]}
        means["examples_per_second"] = (
            self.n_window * int(run.config.batch_size) / max(elapsed, 1e-9)
        )
        run.writer.write(self.step, "train", means)
        self.progress.update(self.step, {"loss": means["loss"], "lr": means["learning_rate"]})
        self.t_window, self.n_window = time.perf_counter(), 0

    def _evaluate(self, whole: bool) -> None:
        """Evaluates, then reduce-on-plateau; not counted as training.

        ``whole``: the whole test split; otherwise ``config.eval_steps`` batches of it
        (evenly spaced). Reduce-on-plateau sees only evaluations of one kind: with
        ``eval_steps`` set, the final whole-split evaluation does not step it.
        """
        run = self.run
        t_eval = time.perf_counter()
        subset = run.config.get("eval_steps")
        self.test_metrics = evaluation.evaluate(
            run.p_eval,
            self.state,
            run.eval_iter,
            run.input_key,
            run.par,
            run.summarize,
            max_batches=None if whole else subset,
        )
        run.writer.write(self.step, "test", self.test_metrics)
        if run.lead:
            self.progress.end_line()
            evaluation.log_metrics(self.step, self.test_metrics)
        if run.plateau is not None and not (whole and subset is not None):
            self._reduce_on_plateau()
        self.t_window += time.perf_counter() - t_eval

    def _reduce_on_plateau(self) -> None:
        run, options = self.run, self.run.plateau
        old = run.par.host(self.state.plateau)
        value = self.test_metrics[options.metric.removeprefix("test_")]
        new = update_plateau(old, value, options)
        self.state = self.state.replace(plateau=run.par.replicate(new))
        if run.lead and new["scale"] != old["scale"]:
            logging.info(
                "step %d: %s has not improved on %.4g for %d evaluations; learning-rate "
                "scale %.4g -> %.4g",
                self.step,
                options.metric,
                float(new["best"]),
                options.patience,
                float(old["scale"]),
                float(new["scale"]),
            )

    def _checkpoint(self, now: bool) -> None:
        """Saves now (the end, a preemption) or holds the checkpoint for the next step."""
        run = self.run
        host = self.restored + [(s, run.par.host(m)) for s, m in self.pending]
        check_finite(host, self.last_ckpt)
        tree = jax.device_get(run.par.unreplicate(self.state).checkpoint_tree())
        extra = build.pending_to_extra(host)  # logged after a resume as if never stopped
        if now:
            check_params_finite(tree["params"], self.step, self.last_ckpt)
            run.ckpt.save(self.step, tree, extra)
            self.last_ckpt = self.step
        else:
            self.held = (self.step, tree, extra)


def _finish(run: RunSetup, loop: _Loop) -> dict[str, Any]:
    """The run's summary, logged unless it was preempted; it holds the final state."""
    summary = {
        "model": run.config.model,
        "parameters": run.n_params,
        "steps": loop.step,
        "num_steps": run.num_steps,
        "preempted": loop.preempted,
        "compile_seconds": loop.compile_s,
        "train_seconds": loop.train_time,
        "workdir": run.workdir,
        **{f"test_{k}": v for k, v in loop.test_metrics.items()},
    }
    if run.lead and not loop.preempted:
        logging.info(
            "summary: %s",
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
            ),
        )
    summary["state"] = run.par.unreplicate(loop.state)
    return summary
