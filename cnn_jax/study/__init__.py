"""Studies: a grid of training runs over one or two settings and seeds, and their report.

A study (:class:`Study`) is a base training config, one or two :class:`Axis` of
settings and a list of seeds. :func:`run_study` trains every cell with
``cnn_jax.train.train_and_evaluate`` in its own sub-workdir (resuming an interrupted
cell, skipping finished ones); :func:`write_report` turns the cells' metrics files into
``table.md`` (mean ± std over seeds), ``curves.png`` and ``results.json``. The command
line is ``python -m experiments.study --study=experiments/configs/study_<name>.py``.
"""

from cnn_jax.study.report import FINAL_METRICS, collect, write_report
from cnn_jax.study.runner import CELL_FILE, cell_dir, read_cell, run_study
from cnn_jax.study.spec import (
    Axis,
    Cell,
    Derived,
    Study,
    apply_settings,
    cells,
    load_study,
    set_key,
)

__all__ = [
    "CELL_FILE",
    "FINAL_METRICS",
    "Axis",
    "Cell",
    "Derived",
    "Study",
    "apply_settings",
    "cell_dir",
    "cells",
    "collect",
    "load_study",
    "read_cell",
    "run_study",
    "set_key",
    "write_report",
]
