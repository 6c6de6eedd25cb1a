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
the same parameters as an uninterrupted one. SIGTERM (preemption) saves a checkpoint
and returns (all processes agree on it first). A non-finite loss or gradient stops
training with a ``TrainingDivergedError`` (a ``FloatingPointError``) naming the step.
A checkpoint is only written once its parameters are known to be good: after the next
step's loss and gradient, computed from them, came out finite (at the end of training
and on preemption, once the parameters themselves are finite); so a blown-up update
never lands in the checkpoint a restart resumes from.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import threading
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from cnn_jax import data as data_lib
from cnn_jax import models
from cnn_jax.ops._validate import is_int
from cnn_jax.train import steps, transfer
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.metrics import MetricWriter, Progress
from cnn_jax.train.optim import OPTIM_KEYS, make_optimizer
from cnn_jax.train.state import TrainState, count_params, create_train_state

__all__ = ["TrainingDivergedError", "train_and_evaluate", "validate_config"]


class TrainingDivergedError(FloatingPointError):
    """Raised when the loss or the gradient becomes NaN or infinite."""


REQUIRED = ("model", "dataset", "batch_size", "optim", "seed")
#: Every top-level key the loop and the input pipeline read; others are typos.
KNOWN_KEYS = frozenset(
    {
        *REQUIRED,
        "model_kwargs",
        "data_dir",
        "cache_dir",
        "source",
        "tfds_data_dir",
        "dataset_options",
        "normalization",
        "pad_to",
        "shuffle",
        "augment",
        "eval_batch_size",
        "num_epochs",
        "num_train_steps",
        "label_smoothing",
        "parallel",
        "half_precision",
        "log_every_steps",
        "eval_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "progress_bar",
        "aux_loss_weight",
        "freeze",
        "init_from",
    }
)


def validate_config(config: ConfigDict) -> None:
    """Checks a training config before anything is built.

    Args:
      config: the experiment config.

    Raises:
      ValueError: naming the offending key and value.
    """
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"config is missing the keys {missing}")
    unknown = sorted(set(config.keys()) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"config has unknown keys {unknown}; known: {sorted(KNOWN_KEYS)}")
    unknown = sorted(set(config.optim.keys()) - OPTIM_KEYS)
    if unknown:
        raise ValueError(f"config.optim has unknown keys {unknown}; known: {sorted(OPTIM_KEYS)}")
    if config.get("parallel", "jit") not in ("jit", "pmap"):
        raise ValueError(f"`config.parallel` (={config.parallel!r}) must be 'jit' or 'pmap'")
    for key in (
        "batch_size",
        "eval_batch_size",
        "checkpoint_every_steps",
        "eval_every_steps",
        "log_every_steps",
        "keep_checkpoints",
        "num_epochs",
        "num_train_steps",
    ):
        value = config.get(key)
        if value is not None and (not is_int(value) or value < 1):
            raise ValueError(f"`config.{key}` (={value!r}) must be a positive int")
    n = jax.device_count()
    for key in ("batch_size", "eval_batch_size"):
        if key in config and config[key] is not None and int(config[key]) % n:
            raise ValueError(
                f"`config.{key}` (={config[key]}) must be divisible by the number of "
                f"devices (={n}); use a multiple of {n}"
            )
    if config.get("num_train_steps") is None and config.get("num_epochs") is None:
        raise ValueError("set `config.num_epochs` or `config.num_train_steps`")
    if config.get("num_train_steps") is not None and config.get("num_epochs") is not None:
        raise ValueError(
            f"set one of `config.num_epochs` (={config.num_epochs!r}) and "
            f"`config.num_train_steps` (={config.num_train_steps!r}), not both: the run "
            "length would be ambiguous (set the other to None)"
        )


class _Preemption:
    """Turns SIGTERM into a flag checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _Preemption:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del signum, frame
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _Parallel:
    """Places the state and batches on devices and compiles the steps, jit or pmap."""

    def __init__(self, mode: str):
        self.mode = mode
        self.local = jax.local_device_count()
        if mode == "jit":
            self.mesh = Mesh(np.array(jax.devices()), ("data",))
            self.replicated = NamedSharding(self.mesh, P())
            self.batch_sharding = NamedSharding(self.mesh, P("data"))

    def state(self, state: TrainState) -> TrainState:
        if self.mode == "jit":
            return jax.device_put(state, self.replicated)
        n = self.local
        # From the host: a restored state is committed to one device, which pmap refuses.
        state = jax.device_get(state)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), state)

    def unreplicate(self, tree: Any) -> Any:
        if self.mode == "jit":
            return tree
        return jax.tree.map(lambda x: x[0], tree)

    def batches(self, iterator: Any) -> Any:
        """Device batches, the next ones' host-to-device copies in flight (jit mode)."""
        if self.mode == "jit":
            return data_lib.prefetch_to_device(iterator, 2, self.batch_sharding)
        return (self.batch(b) for b in iterator)

    def batch(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.mode == "jit":
            return {
                k: jax.make_array_from_process_local_data(self.batch_sharding, v)
                for k, v in batch.items()
            }
        return {k: v.reshape(self.local, -1, *v.shape[1:]) for k, v in batch.items()}

    def compile_train(self, fn: Any) -> Any:
        if self.mode == "jit":
            return jax.jit(fn, donate_argnums=0)
        return jax.pmap(
            functools.partial(fn, axis_name="batch"), axis_name="batch", donate_argnums=0
        )

    def compile_eval(self, fn: Any) -> Any:
        if self.mode == "jit":
            return jax.jit(fn)
        return jax.pmap(functools.partial(fn, axis_name="batch"), axis_name="batch")

    def host(self, tree: Any) -> Any:
        tree = jax.device_get(tree)
        if self.mode == "pmap":
            tree = jax.tree.map(lambda x: x[0], tree)
        return tree


def _model(config: ConfigDict, num_classes: int) -> Any:
    kwargs = dict(config.get("model_kwargs", {}) or {})
    kwargs.setdefault("num_classes", num_classes)
    if config.get("half_precision", False):
        kwargs["dtype"] = jnp.bfloat16
    cls = models.model_class(config.model) if config.model in models.MODELS else None
    if (
        config.get("parallel", "jit") == "pmap"
        and cls is not None
        and "norm" in cls.__dataclass_fields__
    ):
        from cnn_jax.layers import BatchNorm

        kwargs["norm"] = functools.partial(BatchNorm, axis_name="batch")
    return models.get_model(config.model, **kwargs)


def _init_from(init: Any, state: TrainState) -> TrainState:
    """Loads torchvision/Keras weights into a fresh state (``config.init_from``)."""
    from cnn_jax import weights

    unknown = sorted(set(init.keys()) - {"source", "name", "path", "reinit"})
    if unknown:
        raise ValueError(
            f"config.init_from has unknown keys {unknown}; known: name, path, reinit, source"
        )
    source = init.get("source", "torchvision")
    if source not in ("torchvision", "keras"):
        raise ValueError(
            f"`config.init_from.source` (={source!r}) must be 'torchvision' or 'keras'"
        )
    specs = weights.torchvision_specs() if source == "torchvision" else weights.keras_specs()
    if init.get("name") not in specs:
        raise ValueError(
            f"`config.init_from.name` (={init.get('name')!r}) is not a {source} model; "
            f"known: {', '.join(sorted(specs))}"
        )
    spec = specs[init.name]
    path = init.get("path")
    if not path or not os.path.isfile(path):
        raise ValueError(
            f"`config.init_from.path` (={path!r}) is not a file; make one with "
            f"`python -m experiments.make_init_weights --model={init.name} --out=PATH`"
        )
    reinit = tuple(init.get("reinit", ()) or ())
    template = state.variables()
    if source == "torchvision":
        state_dict = weights.load_state_dict(path)
        if spec.prepare is not None:
            state_dict = spec.prepare(state_dict)
        loaded = weights.from_torch(
            state_dict,
            template,
            key_fn=spec.key_fn,
            transforms=spec.transforms,
            exclude=reinit,
        )
    else:
        loaded = weights.from_keras(
            weights.load_keras_weights(path), template, key_fn=spec.key_fn, exclude=reinit
        )
    flat = traverse_util.flatten_dict(template)
    flat.update(traverse_util.flatten_dict(loaded))
    merged = jax.tree.map(jnp.asarray, traverse_util.unflatten_dict(flat))
    params = merged["params"]
    return state.replace(
        params=params,
        batch_stats=merged.get("batch_stats", state.batch_stats),
        opt_state=state.tx.init(params),
    )


def _evaluate(
    p_eval: Any, state: TrainState, eval_iter: Any, input_key: str, par: _Parallel
) -> dict[str, float]:
    """One pass over the test split; sums stay on the device until the end."""
    eval_iter.step = 0
    totals = None
    for batch in eval_iter:
        out = p_eval(state, par.batch(_model_inputs(batch, input_key)))
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = {k: float(v) for k, v in par.host(totals).items()}
    count = max(totals["count"], 1.0)
    return {
        "loss": totals["loss"] / count,
        "accuracy": totals["top1"] / count,
        "top5_accuracy": totals["top5"] / count,
        "count": totals["count"],
    }


def _check_schedule(schedule: Any, num_steps: int) -> None:
    """Fails at start if the learning rate is not finite in float32 somewhere."""
    points = np.unique(np.linspace(0, max(num_steps - 1, 0), 257).astype(np.int64))
    with warnings.catch_warnings():  # an overflowing constant warns; it is reported below
        warnings.simplefilter("ignore", RuntimeWarning)
        lrs = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(points)), np.float64)
    ok = np.isfinite(lrs) & (np.abs(lrs) <= np.finfo(np.float32).max)
    if not np.all(ok):
        first = int(np.argmin(ok))
        raise ValueError(
            f"the learning-rate schedule is not finite in float32 at step {int(points[first])}"
            f" (={lrs[first]}); check `config.optim` (decay_factor, learning_rate)"
        )


def _agreed(flag: bool, process_count: int, sync: bool) -> bool:
    """A preemption flag all processes agree on (any of them), exchanged at ``sync`` steps.

    Every process runs the same steps, so all reach the same sync points; without this,
    a process that saw SIGTERM would enter the (collective) checkpoint save alone.
    """
    if process_count == 1:
        return flag
    if not sync:
        return False
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def _check_params_finite(params: Any, step: int, last_ckpt: int | None) -> None:
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


def _augment_ops(config: ConfigDict) -> tuple[tuple[str, dict[str, Any]], ...]:
    """``config.augment``: a list of names or ``(name, kwargs)`` pairs, checked now."""
    ops = []
    for item in config.get("augment", ()) or ():
        name, kwargs = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
        data_lib.get_augmentation(name, **kwargs)  # raises for unknown names/arguments
        norm = config.get("normalization")
        if norm is not None and data_lib.needs_unit_range(name, **kwargs):
            # The host normalizes before the device augments: clipping to [0, 1] there
            # would flatten every normalized image.
            raise ValueError(
                f"`config.augment` entry {name!r} clips images to [0, 1], but "
                f"`config.normalization` (={norm!r}) normalizes them before the "
                "augmentations run; use normalization=None with it"
            )
        ops.append((name, kwargs))
    return tuple(ops)


def _model_inputs(batch: dict[str, np.ndarray], input_key: str) -> dict[str, np.ndarray]:
    """The arrays the steps use: the model input as ``image``, ``label``, ``mask``."""
    out = {"image": batch[input_key], "label": batch["label"]}
    if "mask" in batch:
        out["mask"] = batch["mask"]
    return out


def _check_finite(pending: list[tuple[int, dict[str, Any]]], last_ckpt: int | None) -> None:
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


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains and evaluates a model as the config says, checkpointing into ``workdir``.

    Args:
      config: the experiment config (see ``experiments/configs``).
      workdir: the run's directory (checkpoints, metrics, TensorBoard events); a run
        restarted with the same directory resumes.

    Returns:
      A summary: final test metrics, steps, parameter count, times.

    Raises:
      ValueError: for an invalid config or a missing data set.
      TrainingDivergedError: if the loss or the gradient becomes non-finite.
    """
    validate_config(config)
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    process = (jax.process_index(), jax.process_count())
    lead = process[0] == 0
    info = data_lib.get_dataset_info(config.dataset)
    global_batch = int(config.batch_size)
    train_iter = data_lib.input_pipeline(
        config,
        "train",
        rng_seed=int(config.seed),
        process_index=process[0],
        process_count=process[1],
    )
    steps_per_epoch = train_iter.steps_per_epoch
    input_shape = _model_inputs(train_iter.batch_at(0), info.input_key)["image"].shape[1:]
    num_steps = int(config.get("num_train_steps") or config.num_epochs * steps_per_epoch)
    eval_every = int(config.get("eval_every_steps") or steps_per_epoch)
    log_every = int(config.get("log_every_steps") or 100)
    ckpt_every = int(config.get("checkpoint_every_steps") or steps_per_epoch)

    model = _model(config, info.num_classes)
    tx, schedule = make_optimizer(config.optim, steps_per_epoch, num_steps)
    _check_schedule(schedule, num_steps)
    init_key, dropout_key = jax.random.split(jax.random.key(int(config.seed)))
    freeze = tuple(config.get("freeze", ()) or ())
    if freeze:
        tx = optax.multi_transform(
            {"trainable": tx, "frozen": optax.set_to_zero()},
            functools.partial(transfer.freeze_labels, patterns=freeze),
        )
    state = create_train_state(model, tx, init_key, (1, *input_shape))
    n_params = count_params(state.params)

    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=int(config.get("keep_checkpoints", 3))
    )
    start = 0
    if ckpt.latest_step() is not None:
        state = state.restore(ckpt.restore(state.checkpoint_tree()))
        start = int(state.step)
    elif config.get("init_from"):
        state = _init_from(config.init_from, state)
    writer = MetricWriter(workdir, enabled=lead, resume_step=start)
    par = _Parallel(config.get("parallel", "jit"))
    state = par.state(state)

    train_fn = functools.partial(
        steps.train_step,
        base_key=dropout_key,
        schedule=schedule,
        label_smoothing=float(config.get("label_smoothing", 0.0)),
        augment_ops=_augment_ops(config),
        uses_plateau=bool(config.optim.get("reduce_on_plateau", False)),
        aux_loss_weight=float(config.get("aux_loss_weight", 0.0) or 0.0),
        frozen=freeze,
    )
    p_train = par.compile_train(train_fn)
    p_eval = par.compile_eval(steps.eval_step)
    if lead:
        print(
            f"{config.model}: {n_params:,} parameters; {num_steps} steps "
            f"({steps_per_epoch}/epoch), global batch {global_batch} on "
            f"{jax.device_count()} {jax.devices()[0].platform} device(s) with {par.mode}"
            + (f"; resuming from step {start}" if start else ""),
            flush=True,
        )

    train_iter.step = start
    train_iter.num_steps = None  # the loop counts the steps
    batches = par.batches(_model_inputs(b, info.input_key) for b in train_iter)
    eval_iter = data_lib.input_pipeline(
        config,
        "test",
        rng_seed=int(config.seed),
        process_index=process[0],
        process_count=process[1],
    )
    progress = Progress(num_steps, start, enabled=lead and config.get("progress_bar", True))
    pending: list[tuple[int, dict[str, Any]]] = []
    last_ckpt = ckpt.latest_step()
    # A checkpoint is written only once its parameters are known to be good: when the
    # next step's loss and gradient, computed from them, are finite (or, at the end of
    # training and on preemption, when the parameters themselves are finite).
    held: tuple[int, Any] | None = None
    compile_s = None
    t_window, n_window = time.perf_counter(), 0
    train_time = 0.0
    test_metrics: dict[str, float] = {}
    step = start
    preempted = False
    try:
        with _Preemption() as preemption:
            while step < num_steps:
                batch = next(batches)
                if compile_s is None:
                    t0 = time.perf_counter()
                    p_train = p_train.lower(state, batch).compile()
                    compile_s = time.perf_counter() - t0
                    t_window = time.perf_counter()
                state, metrics = p_train(state, batch)
                step += 1
                n_window += 1
                pending.append((step, metrics))
                if held is not None:
                    _check_finite([(step, par.host(metrics))], last_ckpt)
                    ckpt.save(*held)
                    last_ckpt, held = held[0], None
                if step % log_every == 0 or step == num_steps:
                    host = [(s, par.host(m)) for s, m in pending]
                    _check_finite(host, last_ckpt)
                    pending.clear()
                    elapsed = time.perf_counter() - t_window
                    train_time += elapsed
                    means = {k: float(np.mean([m[k] for _, m in host])) for k in host[0][1]}
                    means["examples_per_second"] = n_window * global_batch / max(elapsed, 1e-9)
                    writer.write(step, "train", means)
                    progress.update(step, {"loss": means["loss"], "lr": means["learning_rate"]})
                    t_window, n_window = time.perf_counter(), 0
                if step % eval_every == 0 or step == num_steps:
                    t_eval = time.perf_counter()
                    test_metrics = _evaluate(p_eval, state, eval_iter, info.input_key, par)
                    writer.write(step, "test", test_metrics)
                    if lead:
                        print(
                            f"\nstep {step}: test loss {test_metrics['loss']:.4f}, top-1 "
                            f"{100 * test_metrics['accuracy']:.2f}%, top-5 "
                            f"{100 * test_metrics['top5_accuracy']:.2f}%",
                            flush=True,
                        )
                    t_window += time.perf_counter() - t_eval  # evaluation is not training
                sync = step % log_every == 0 or step % ckpt_every == 0
                stop = _agreed(preemption.requested, process[1], sync)
                if stop or step % ckpt_every == 0 or step == num_steps:
                    _check_finite([(s, par.host(m)) for s, m in pending], last_ckpt)
                    tree = jax.device_get(par.unreplicate(state).checkpoint_tree())
                    if stop or step == num_steps:
                        _check_params_finite(tree["params"], step, last_ckpt)
                        ckpt.save(step, tree)
                        last_ckpt = step
                    else:
                        held = (step, tree)
                if stop:
                    preempted = True
                    if lead:
                        print(
                            f"SIGTERM: saved checkpoint {step}, exiting; rerun to resume.",
                            flush=True,
                        )
                    break
    finally:
        ckpt.close()
        writer.close()
    summary = {
        "model": config.model,
        "parameters": n_params,
        "steps": step,
        "num_steps": num_steps,
        "preempted": preempted,
        "compile_seconds": compile_s,
        "train_seconds": train_time,
        "workdir": workdir,
        **{f"test_{k}": v for k, v in test_metrics.items()},
    }
    if lead and not preempted:
        print(
            "summary: "
            + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
            ),
            flush=True,
        )
    summary["state"] = par.unreplicate(state)
    return summary
