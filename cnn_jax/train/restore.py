"""A trained run read back for analysis: its config, model, variables and test split.

Figures, samples and ensembles of a finished (or interrupted) run need the same four
things: the config the run was started with, the model it builds, the newest
checkpoint's variables, and the evaluation data. :func:`load_run` returns the first
three; :func:`raw_split` the data set's arrays as stored (uint8 images, labels).

Example::

  run = load_run("runs/cnn_mnist")            # config from runs/cnn_mnist/config.json
  logits, _ = run.model.apply(run.variables, images)
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from cnn_jax.train.config_record import RECORD_FILE

__all__ = ["Run", "load_run", "raw_split", "read_config_record", "restore_variables"]


@dataclasses.dataclass(frozen=True)
class Run:
    """A restored run.

    Attributes:
      workdir: the run's directory.
      config: its config (the one passed, or the one recorded at its start).
      model: the model ``config`` builds (``cnn_jax.train.build.build_model``).
      variables: ``{'params': ...}`` and ``'batch_stats'`` when the model has them.
      step: the restored checkpoint's step.
      num_classes: the data set's class count.
    """

    workdir: str
    config: Any
    model: Any
    variables: dict[str, Any]
    step: int
    num_classes: int

    @property
    def params(self) -> Any:
        """The restored parameters."""
        return self.variables["params"]


def read_config_record(workdir: str) -> ConfigDict:
    """The config ``workdir`` was started with (``<workdir>/config.json``).

    JSON has no tuples: the record's lists become tuples again (configs hold tuples), so
    a model built from the record equals, and hashes like, the one the run built.

    Raises:
      FileNotFoundError: if the run has no record.
    """
    path = os.path.join(workdir, RECORD_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"`workdir` (={workdir!r}) has no {RECORD_FILE}; pass the run's config"
        )
    with open(path) as f:
        flat = json.load(f)["config"]
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _tuples(value)
    return ConfigDict(tree)


def _tuples(value: Any) -> Any:
    """Lists to tuples, recursively (also inside dicts)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def restore_variables(workdir: str, step: int | None = None) -> tuple[dict[str, Any], int]:
    """The model variables of a checkpoint in ``<workdir>/checkpoints`` and its step.

    Only ``params`` and ``batch_stats`` are read; the optimizer state stays on disk.

    Args:
      workdir: the run's directory.
      step: which checkpoint (default: the newest).

    Returns:
      ``({'params': ..., ['batch_stats': ...]}, step)``.

    Raises:
      FileNotFoundError: if ``workdir`` has no checkpoint (nothing is created).
    """
    from cnn_jax.train.checkpoint import Checkpointer

    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"`workdir` (={workdir!r}) has no checkpoints folder")
    ckpt = Checkpointer(directory)
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"`workdir` (={workdir!r}) has no complete checkpoint")
        tree = ckpt.restore_keys(("params", "batch_stats"), step)
    finally:
        ckpt.close()
    variables = {"params": tree["params"]}
    if tree.get("batch_stats"):
        variables["batch_stats"] = tree["batch_stats"]
    return variables, int(step)


def load_run(workdir: str, config: Any = None, step: int | None = None) -> Run:
    """The run in ``workdir``: config, model and a checkpoint's variables.

    Args:
      workdir: the run's directory.
      config: its config; default: the one recorded when the run started.
      step: which checkpoint (default: the newest).

    Raises:
      FileNotFoundError: for a workdir without a config record (and no ``config``) or
        without a checkpoint.
    """
    from cnn_jax import data
    from cnn_jax.train.build import build_model

    config = read_config_record(workdir) if config is None else config
    info = data.get_dataset_info(config.dataset)
    model = build_model(config, info.num_classes)
    variables, step = restore_variables(workdir, step)
    return Run(workdir, config, model, variables, step, info.num_classes)


def raw_split(config: Any, split: str = "test") -> dict[str, np.ndarray]:
    """The arrays of ``config.dataset``'s ``split`` as stored (no pipeline transforms)."""
    from cnn_jax import data

    options = dict(config.get("dataset_options", {}) or {})
    return data.load_dataset(config.dataset, split, config.get("data_dir"), **options)
