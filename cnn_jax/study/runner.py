"""Runs a study's cells in sequence, each in its own sub-workdir, resuming where it stopped.

Layout of a study workdir::

    study.json                 the study's axes, labels and seeds
    cells/<cell name>/         one training workdir per cell (checkpoints, metrics.jsonl)
    cells/<cell name>/cell.json    written when the cell is over (done or diverged)
    table.md, curves.png, results.json   the report (cnn_jax.study.report)

A cell with a ``cell.json`` is skipped; any other cell is (re)started with
``train_and_evaluate``, which resumes from the newest checkpoint in its sub-workdir, so
a study killed at any point and run again finishes with the same numbers as one that
never stopped. A cell whose loss becomes non-finite is recorded as diverged (the study
goes on); a cell stopped by SIGTERM stops the study (run it again to continue).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from absl import logging
from ml_collections import ConfigDict

from cnn_jax.study.spec import Cell, Study, cells
from cnn_jax.train.divergence import TrainingDivergedError
from cnn_jax.train.metrics import atomic_write

__all__ = ["CELL_FILE", "cell_dir", "read_cell", "run_study"]

#: The file that marks a cell as over.
CELL_FILE = "cell.json"

TrainFn = Callable[[ConfigDict, str], dict[str, Any]]


def cell_dir(workdir: str, cell: Cell) -> str:
    """The sub-workdir of ``cell``."""
    return os.path.join(workdir, "cells", cell.name)


def read_cell(workdir: str, cell: Cell) -> dict[str, Any] | None:
    """The record of a finished cell, or None if it has not finished."""
    path = os.path.join(cell_dir(workdir, cell), CELL_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _jsonable(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in summary.items()
        if k != "state" and (v is None or isinstance(v, bool | int | float | str))
    }


def _default_train(config: ConfigDict, workdir: str) -> dict[str, Any]:
    from cnn_jax.train import train_and_evaluate

    return train_and_evaluate(config, workdir)


def run_study(study: Study, workdir: str, *, train: TrainFn | None = None) -> bool:
    """Trains every cell of ``study`` not finished yet, in order.

    Args:
      study: the study.
      workdir: the study's directory (created).
      train: the training function, ``train_and_evaluate`` by default (tests wrap it).

    Returns:
      True if every cell is over (done or diverged); False if a cell was preempted.
    """
    train = train or _default_train
    workdir = os.path.abspath(workdir)
    os.makedirs(os.path.join(workdir, "cells"), exist_ok=True)
    record = {
        "name": study.name,
        "axes": [{"key": a.key, "labels": list(a.names())} for a in study.axes],
        "seeds": list(study.seeds),
    }
    atomic_write(os.path.join(workdir, "study.json"), json.dumps(record, indent=1) + "\n")
    todo = cells(study)
    for i, cell in enumerate(todo):
        if read_cell(workdir, cell) is not None:
            continue
        where = cell_dir(workdir, cell)
        logging.info("study %s: cell %d/%d %s", study.name, i + 1, len(todo), cell.name)
        try:
            summary = train(cell.config, where)
        except TrainingDivergedError as e:
            logging.warning("study %s: cell %s diverged: %s", study.name, cell.name, e)
            out = {"status": "diverged", "message": str(e), "summary": {}}
        else:
            if summary.get("preempted"):
                logging.warning(
                    "study %s: preempted in cell %s; rerun to resume", study.name, cell.name
                )
                return False
            out = {"status": "done", "message": "", "summary": _jsonable(summary)}
        out.update(name=cell.name, labels=list(cell.labels), seed=cell.seed)
        atomic_write(os.path.join(where, CELL_FILE), json.dumps(out, indent=1) + "\n")
    return True
