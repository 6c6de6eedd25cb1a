"""The config a workdir was started with, recorded in ``<workdir>/config.json``.

A run records its config when it starts without a checkpoint. A run that resumes from a
checkpoint compares its config with the record, key by key (``a.b.c``):

* keys in :data:`FREE_KEYS` change how the run is observed or where its files are, not
  its trajectory (parameters, optimizer state, batches, random keys): they may change,
  with an INFO line;
* ``eval_every_steps``, ``eval_batch_size`` and ``eval_steps`` are free too, unless
  ``optim.reduce_on_plateau.metric`` is set (evaluations then steer the learning rate);
* ``init_from.*`` (the weights a fresh start loads) is free: a resume restores its
  checkpoint and never reads them;
* every other change (batch size, seed, optimizer, schedule, run length, model, data,
  augmentation, parallel mode) is refused with a
  :class:`ConfigChangedError` listing ``key: old -> new`` unless
  ``config.allow_config_change`` is True; then the changes are logged as a warning and
  the record is updated.

The run length (``num_train_steps``, ``num_epochs``) is free unless the schedule is
``cosine``, the one schedule that spans the run length: training a cosine run longer
does not follow the trajectory of a run planned that long, so it must be allowed
explicitly. (A length below the checkpoint's step is always an error.)
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
from ml_collections import ConfigDict

__all__ = ["FREE_KEYS", "RECORD_FILE", "ConfigChangedError", "check_or_record", "flatten"]

RECORD_FILE = "config.json"
#: Keys whose change does not alter the trajectory.
FREE_KEYS = frozenset(
    {
        "allow_config_change",
        "cache_dir",
        "checkpoint_every_steps",
        "data_dir",
        "keep_checkpoints",
        "log_every_steps",
        "progress_bar",
        "tfds_data_dir",
    }
)
_EVAL_KEYS = frozenset({"eval_every_steps", "eval_batch_size", "eval_steps"})
_LENGTH_KEYS = frozenset({"num_train_steps", "num_epochs"})
_ABSENT = "<absent>"
#: Keys read only at a fresh start (the weights to start from): a resume restores its
#: checkpoint instead, so they may change, e.g. a weights file that moved.
_START_ONLY_PREFIXES = ("init_from.", "init_from")


class ConfigChangedError(ValueError):
    """A resumed run's config changes its trajectory; the message lists the changes."""


def _plain(value: Any) -> Any:
    """A JSON-comparable form of a config value (tuples as lists, others as strings)."""
    return json.loads(json.dumps(value, default=repr))


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{'a.b.c': value}`` for every leaf of a config (tuples as lists)."""
    out = {}
    items = config.items() if hasattr(config, "items") else []
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (ConfigDict, dict)) and len(value):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (ConfigDict, dict)):
            out[name] = {}
        else:
            out[name] = _plain(value)
    return out


def _changes(old: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Keys whose values differ; a key missing on one side takes its default."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a = old.get(key, defaults.get(key, _ABSENT))
        b = new.get(key, defaults.get(key, _ABSENT))
        if a != b:
            changed.append(key)
    return changed


def check_or_record(config: ConfigDict, workdir: str, resuming: bool, lead: bool = True) -> None:
    """Records the config at a fresh start; on a resume, refuses trajectory changes.

    Args:
      config: the run's config.
      workdir: the run's directory.
      resuming: whether the run restores a checkpoint.
      lead: whether this process writes files (the first process).

    Raises:
      ConfigChangedError: on a resume whose config changes a key outside
        :data:`FREE_KEYS` and ``config.allow_config_change`` is not True; the message
        lists ``key: old -> new``.
    """
    from cnn_jax.train.config import default_config

    path = os.path.join(workdir, RECORD_FILE)
    new = flatten(config)
    old = None
    if resuming and os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)["config"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            logging.warning("%s is unreadable (%s); recording this run's config", path, e)
    if old is not None:
        changed = _changes(old, new, flatten(default_config()))
        plateau = new.get("optim.reduce_on_plateau.metric") or old.get(
            "optim.reduce_on_plateau.metric"
        )
        free = FREE_KEYS if plateau else FREE_KEYS | _EVAL_KEYS
        if "cosine" not in (new.get("optim.schedule"), old.get("optim.schedule")):
            free = free | _LENGTH_KEYS  # the schedule does not span the run length
        lines = [f"  {k}: {old.get(k, _ABSENT)!r} -> {new.get(k, _ABSENT)!r}" for k in changed]
        strict = [
            line
            for k, line in zip(changed, lines)
            if k not in free and not k.startswith(_START_ONLY_PREFIXES)
        ]
        if strict and not config.get("allow_config_change", False):
            raise ConfigChangedError(
                f"the config differs from the one {workdir} was started with "
                f"({path}) in keys that change the training trajectory:\n"
                + "\n".join(strict)
                + "\nUse a new workdir, restore the old values, or set "
                "config.allow_config_change=True (e.g. to train longer)."
            )
        if lead and strict:
            logging.warning("resuming with a changed config (allowed):\n%s", "\n".join(strict))
        elif lead and changed:
            logging.info("resuming with changed settings:\n%s", "\n".join(lines))
        if not changed:
            return
    if lead:
        from cnn_jax.train.checkpoint_integrity import atomic_write_json

        atomic_write_json(path, {"config": new})
