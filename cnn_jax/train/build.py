"""A run's parts built from its config: model, optimizer, state, augmentations.

The fresh, loaded (``config.init_from``) or restored state, and the checks that fail at
start rather than deep inside a run.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from ml_collections import ConfigDict

from cnn_jax import data as data_lib
from cnn_jax import models
from cnn_jax.train import transfer
from cnn_jax.train.optim import make_optimizer
from cnn_jax.train.state import TrainState, create_train_state

__all__ = [
    "augment_ops",
    "build_model",
    "build_state",
    "check_schedule",
    "init_from",
    "init_from_enabled",
    "model_inputs",
    "pending_from_extra",
    "pending_to_extra",
    "restore_or_initialize",
]


def build_model(config: ConfigDict, num_classes: int) -> Any:
    """The model of ``config.model`` with ``config.model_kwargs``.

    ``num_classes`` is the data set's unless the kwargs set it; ``half_precision``
    computes in bfloat16; under ``pmap`` a model with a ``norm`` field gets BatchNorm
    averaged over the ``'batch'`` axis.
    """
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


def check_schedule(schedule: Any, num_steps: int) -> None:
    """Fails at start if the learning rate is not finite in float32 somewhere.

    Raises:
      ValueError: naming the first bad step and its learning rate.
    """
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


def model_inputs(batch: dict[str, np.ndarray], input_key: str) -> dict[str, np.ndarray]:
    """The arrays the steps use: the model input as ``image``, ``label``, ``mask``."""
    out = {"image": batch[input_key], "label": batch["label"]}
    if "mask" in batch:
        out["mask"] = batch["mask"]
    return out


def augment_ops(config: ConfigDict) -> tuple[tuple[str, dict[str, Any]], ...]:
    """``config.augment``: a list of names or ``(name, kwargs)`` pairs, checked now.

    Raises:
      ValueError: for an unknown augmentation, or one that clips to [0, 1] after a
        host normalization.
    """
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


def build_state(
    config: ConfigDict,
    num_classes: int,
    input_shape: tuple[int, ...],
    steps_per_epoch: int,
    num_steps: int,
    init_key: jax.Array,
) -> tuple[TrainState, optax.Schedule]:
    """The model, its optimizer (frozen parts set to zero) and a fresh state.

    Args:
      config: the experiment config.
      num_classes: the data set's classes.
      input_shape: one example's shape, e.g. ``(32, 32, 1)``.
      steps_per_epoch: training steps per epoch.
      num_steps: training steps of the run.
      init_key: the parameters' initialization key.

    Returns:
      ``(state, schedule)``: the state at step 0 and the learning-rate schedule.
    """
    model = build_model(config, num_classes)
    tx, schedule = make_optimizer(config.optim, steps_per_epoch, num_steps)
    check_schedule(schedule, num_steps)
    freeze = tuple(config.get("freeze", ()) or ())
    if freeze:
        tx = optax.multi_transform(
            {"trainable": tx, "frozen": optax.set_to_zero()},
            functools.partial(transfer.freeze_labels, patterns=freeze),
        )
    return create_train_state(model, tx, init_key, (1, *input_shape)), schedule


def init_from_enabled(init: Any) -> bool:
    """Whether ``config.init_from`` asks for weights (a ``name`` or a ``path`` is set)."""
    return init is not None and any(init.get(k) is not None for k in ("name", "path"))


def init_from(init: Any, state: TrainState) -> TrainState:
    """Loads torchvision/Keras weights into a fresh state (``config.init_from``).

    Args:
      init: the ``config.init_from`` block: ``source`` (``'torchvision'`` or
        ``'keras'``), ``name`` (a ``cnn_jax.weights`` spec), ``path`` (the file),
        ``reinit`` (module-path patterns left at their fresh initialization).
      state: the fresh state.

    Returns:
      The state with the loaded parameters and batch statistics and a fresh optimizer
      state.

    Raises:
      ValueError: naming the key for an unknown source or name, a missing file, or a
        ``reinit`` pattern that matches no variable of the model.
    """
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
    from cnn_jax.weights._tree import check_patterns

    check_patterns(reinit, traverse_util.flatten_dict(template), "config.init_from.reinit")
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


def restore_or_initialize(
    config: ConfigDict, state: TrainState, ckpt: Any, num_steps: int, workdir: str, lead: bool
) -> tuple[TrainState, int, list[tuple[int, dict[str, np.ndarray]]]]:
    """The newest intact checkpoint if there is one, else ``config.init_from``'s weights.

    A checkpoint written before the state had a ``plateau`` entry restores without it
    (the fresh one is kept). The config is recorded in the workdir at a fresh start and
    checked against the record on a resume (``cnn_jax.train.config_record``).

    Args:
      config: the experiment config.
      state: the fresh state.
      ckpt: the run's ``Checkpointer``.
      num_steps: the run length.
      workdir: the run's directory.
      lead: whether this is the first process (which writes the record).

    Returns:
      ``(state, start step, pending)``: ``pending`` holds the ``(step, host metrics)``
      of the steps after the last log that the checkpoint saved with it.

    Raises:
      ConfigChangedError: (a ValueError) if the run length is below the checkpoint's
        step, or if a resume changes the trajectory without
        ``config.allow_config_change``.
    """
    from cnn_jax.train import config_record

    restored = ckpt.restore_latest(state.checkpoint_tree())
    if restored is None:
        config_record.check_or_record(config, workdir, resuming=False, lead=lead)
        if init_from_enabled(config.get("init_from")):
            state = init_from(config.init_from, state)
        return state, 0, []
    start = int(restored.step)
    if num_steps < start:
        raise config_record.ConfigChangedError(
            f"the run length ({num_steps} steps: `config.num_train_steps` or "
            f"`config.num_epochs`) is below the step of the newest checkpoint in "
            f"{ckpt.directory} ({start}); set at least {start} (with "
            "`config.allow_config_change=True`), or use a new workdir"
        )
    config_record.check_or_record(config, workdir, resuming=True, lead=lead)
    return state.restore(restored.tree), start, pending_from_extra(restored.extra)


def pending_to_extra(pending: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """The training metrics not yet logged, as JSON (values with their dtypes)."""
    return {
        "pending": [
            [int(s), {k: [float(v), str(np.asarray(v).dtype)] for k, v in m.items()}]
            for s, m in pending
        ]
    }


def pending_from_extra(extra: Any) -> list[tuple[int, dict[str, np.ndarray]]]:
    """The inverse of :func:`pending_to_extra` (empty for a checkpoint without it)."""
    if not extra or "pending" not in extra:
        return []
    return [
        (int(s), {k: np.asarray(v, dtype) for k, (v, dtype) in m.items()})
        for s, m in extra["pending"]
    ]
