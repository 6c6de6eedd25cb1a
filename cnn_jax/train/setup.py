"""A training run set up: data, run length, state (fresh, loaded or restored), devices, steps.

``set_up(config, workdir)`` does everything ``cnn_jax.train.loop`` needs before the first
step: the input pipelines, the run's length and logging cadence, the model's state
(fresh, loaded from ``config.init_from`` or restored from the workdir's newest intact
checkpoint, ``build.restore_or_initialize``), the devices (``Parallel``) and the
compiled train and eval steps. Its result, ``RunSetup``, is what the loop reads.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
from absl import logging
from ml_collections import ConfigDict

from cnn_jax import data as data_lib
from cnn_jax.train import build, steps
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.losses import get_loss
from cnn_jax.train.metrics import MetricWriter
from cnn_jax.train.parallel import Parallel
from cnn_jax.train.plateau import PlateauOptions, plateau_options
from cnn_jax.train.state import TrainState, count_params

__all__ = ["RunSetup", "set_up"]


@dataclasses.dataclass
class RunSetup:
    """A run once set up: its data, length, devices, state, steps and outputs (the loop's input)."""

    config: ConfigDict
    workdir: str
    process: tuple[int, int]
    input_key: str
    train_iter: Any
    eval_iter: Any
    steps_per_epoch: int
    num_steps: int
    log_every: int
    eval_every: int
    ckpt_every: int
    par: Parallel
    state: TrainState
    start: int
    n_params: int
    ckpt: Checkpointer
    writer: MetricWriter
    p_train: Any
    p_eval: Any
    summarize: Any  # the loss's summarize hook for its extra evaluation sums, or None
    plateau: PlateauOptions | None
    pending: list[tuple[int, dict[str, Any]]]  # restored metrics not yet logged

    @property
    def lead(self) -> bool:
        """Whether this is the first process (the one that logs and writes)."""
        return self.process[0] == 0


def _pipeline(config: ConfigDict, split: str, process: tuple[int, int]) -> Any:
    return data_lib.input_pipeline(
        config, split, rng_seed=int(config.seed), process_index=process[0], process_count=process[1]
    )


def _loss_options(config: ConfigDict) -> dict[str, Any]:
    """``config.loss_options`` as plain keywords (lists as tuples, so they hash)."""
    options = config.get("loss_options") or {}
    options = options.to_dict() if hasattr(options, "to_dict") else dict(options)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def set_up(config: ConfigDict, workdir: str) -> RunSetup:
    """Data, run length, state (fresh, loaded or restored), devices and compiled steps."""
    process = (jax.process_index(), jax.process_count())
    info = data_lib.get_dataset_info(config.dataset)
    train_iter = _pipeline(config, "train", process)
    steps_per_epoch = train_iter.steps_per_epoch
    input_shape = build.model_inputs(train_iter.batch_at(0), info.input_key)["image"].shape[1:]
    num_steps = int(config.get("num_train_steps") or config.num_epochs * steps_per_epoch)
    augment_ops = build.augment_ops(config)
    plateau = plateau_options(config.optim)
    init_key, dropout_key = jax.random.split(jax.random.key(int(config.seed)))
    state, schedule = build.build_state(
        config, info.num_classes, input_shape, steps_per_epoch, num_steps, init_key
    )
    n_params = count_params(state.params)
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=int(config.get("keep_checkpoints", 3))
    )
    try:  # nothing below may leave the checkpointer (and its threads) open on an error
        state, start, pending = build.restore_or_initialize(
            config, state, ckpt, num_steps, workdir, lead=process[0] == 0
        )
        writer = MetricWriter(workdir, enabled=process[0] == 0, resume_step=start)
        par = Parallel(config.get("parallel", "jit"))
        train_fn = functools.partial(
            steps.train_step,
            base_key=dropout_key,
            schedule=schedule,
            label_smoothing=float(config.get("label_smoothing", 0.0)),
            augment_ops=augment_ops,
            uses_plateau=plateau is not None,
            aux_loss_weight=float(config.get("aux_loss_weight", 0.0) or 0.0),
            frozen=tuple(config.get("freeze", ()) or ()),
            loss=config.get("loss", "cross_entropy"),
            loss_options=_loss_options(config),
        )
        run = RunSetup(
            config=config,
            workdir=workdir,
            process=process,
            input_key=info.input_key,
            train_iter=train_iter,
            eval_iter=_pipeline(config, "test", process),
            steps_per_epoch=steps_per_epoch,
            num_steps=num_steps,
            log_every=int(config.get("log_every_steps") or 100),
            eval_every=int(config.get("eval_every_steps") or steps_per_epoch),
            ckpt_every=int(config.get("checkpoint_every_steps") or steps_per_epoch),
            par=par,
            state=par.replicate(state),
            start=start,
            n_params=n_params,
            ckpt=ckpt,
            writer=writer,
            p_train=par.compile_train(train_fn),
            p_eval=par.compile_eval(
                functools.partial(
                    steps.eval_step,
                    loss=config.get("loss", "cross_entropy"),
                    loss_options=_loss_options(config),
                )
            ),
            summarize=getattr(get_loss(config.get("loss", "cross_entropy")), "summarize", None),
            plateau=plateau,
            pending=pending,
        )
    except BaseException:
        ckpt.close()
        raise
    if run.lead:
        logging.info(
            "%s: %s parameters; %d steps (%d/epoch), global batch %d on %d %s device(s) with %s%s",
            config.model,
            f"{n_params:,}",
            num_steps,
            steps_per_epoch,
            int(config.batch_size),
            jax.device_count(),
            jax.devices()[0].platform,
            par.mode,
            f"; resuming from step {start}" if start else "",
        )
    return run
