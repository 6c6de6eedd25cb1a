r"""Runs a study (a grid of training runs) and writes its report.

Example:
  python -m experiments.study --study=experiments/configs/study_preprocessing.py:runlocal \
      --workdir=runs/study_preprocessing

Trains every cell of the study not finished yet (``cnn_jax.study.run_study``; rerun the
same command to resume after an interruption), then writes ``table.md``,
``curves.png`` and ``results.json`` into the workdir (``cnn_jax.study.write_report``).
``--report_only`` writes the report from the cells run so far.
"""

import logging as std_logging
import os
import sys
from pathlib import Path

from absl import app, flags, logging

import cnn_jax

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defines the flags (when run as a script, so that importing defines none)."""
    flags.DEFINE_string("study", None, "Study config file, optionally :variant.")
    flags.DEFINE_string("workdir", None, "The study's directory; resumes if it holds cells.")
    flags.DEFINE_bool("report_only", False, "Write the report from the finished cells only.")
    flags.mark_flags_as_required(["study", "workdir"])


_OWN_CODE = tuple(
    os.path.realpath(p) + os.sep for p in (Path(cnn_jax.__file__).parent, Path(__file__).parent)
)


def _own_info_only(record: std_logging.LogRecord) -> bool:
    """Warnings and errors, and INFO lines from cnn_jax and experiments (not orbax's)."""
    return record.levelno >= std_logging.WARNING or os.path.realpath(record.pathname).startswith(
        _OWN_CODE
    )


def main(argv: list[str]) -> None:
    """Loads the study, trains its cells, writes the report."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.get_absl_handler().addFilter(_own_info_only)
    cnn_jax.apply_xla_cpu_defaults()
    from cnn_jax import study as study_lib

    study = study_lib.load_study(FLAGS.study)
    finished = True if FLAGS.report_only else study_lib.run_study(study, FLAGS.workdir)
    study_lib.write_report(study, FLAGS.workdir)
    logging.info("study %s: report in %s", study.name, FLAGS.workdir)
    if not finished:
        sys.exit(1)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
