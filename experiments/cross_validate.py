"""K-fold cross-validation through the training loop: one ``train_and_evaluate`` per fold.

  python -m experiments.cross_validate --config=experiments/configs/textcnn_mr.py:cpu \
      --workdir=runs/textcnn_mr_cv [--folds=0,1,2] [--vectors=vectors.bin]

For every fold ``k`` (all ``MR_NUM_FOLDS`` by default) the config gets
``dataset_options.fold = k`` and trains in ``<workdir>/fold_<k>`` with the ordinary loop
(a fold already finished there is read back, an interrupted one resumes from its
checkpoint). With ``--vectors`` (word2vec binary/text or GloVe, for CNN-static and
CNN-non-static) each fold's embedding matrix is built for that fold's training
vocabulary and written to ``<workdir>/fold_<k>/embeddings.npy``. The table of the
folds' test accuracies with their mean and standard deviation goes to
``<workdir>/cv_results.json`` and ``<workdir>/cv_results.md``, rewritten after each fold.
"""

from __future__ import annotations

import copy
import json
import logging as std_logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """The command's flags, defined when it runs (importing the module defines none)."""
    config_flags.DEFINE_config_file("config", None, "Experiment config (optionally :variant).")
    flags.DEFINE_string("workdir", None, "Directory of the folds' runs and the table.")
    flags.DEFINE_string("folds", None, "Comma-separated folds to run (default: every fold).")
    flags.DEFINE_string("vectors", None, "Word vectors (word2vec .bin/.txt, GloVe), static modes.")
    flags.DEFINE_string("vectors_format", "auto", "Format of --vectors (cnn_jax.data.embeddings).")
    flags.mark_flags_as_required(["config", "workdir"])


_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_OWN_CODE = tuple(os.path.join(_ROOT, d) + os.sep for d in ("cnn_jax", "experiments"))


def _own_info_only(record: std_logging.LogRecord) -> bool:
    """Warnings and errors, and INFO lines of cnn_jax and experiments (not orbax's)."""
    return record.levelno >= std_logging.WARNING or os.path.realpath(record.pathname).startswith(
        _OWN_CODE
    )


def parse_folds(text: str | None, num_folds: int) -> list[int]:
    """``'0,2'`` -> ``[0, 2]``; None -> every fold.

    Raises:
      ValueError: naming ``--folds`` for a fold outside ``[0, num_folds)`` or a repeat.
    """
    if text is None or not text.strip():
        return list(range(num_folds))
    try:
        folds = [int(p) for p in text.split(",") if p.strip()]
    except ValueError as e:
        raise ValueError(f"`--folds` (={text!r}) must be comma-separated ints") from e
    if not folds or len(set(folds)) != len(folds) or not all(0 <= f < num_folds for f in folds):
        raise ValueError(f"`--folds` (={text!r}) must be distinct ints in [0, {num_folds})")
    return folds


def fold_embeddings(
    config: ConfigDict, fold: int, vectors: tuple[list[str], Any], out: Path
) -> str:
    """Writes the embedding matrix of ``fold``'s training vocabulary; returns its path."""
    from cnn_jax import data
    from cnn_jax.data import embeddings

    options = dict(config.dataset_options)
    options["fold"] = fold
    vocab = data.load_vocabulary(
        config.dataset, config.get("data_dir"), cache_dir=config.get("cache_dir"), **options
    )
    words, matrix = vectors
    rows = config.model_kwargs.get("vocab_size", len(vocab))
    emb, found = embeddings.embedding_matrix(vocab, words, matrix, num_rows=rows, seed=fold)
    logging.info("fold %d: %d of %d vocabulary words have a vector", fold, found, len(vocab))
    out.mkdir(parents=True, exist_ok=True)
    return embeddings.save_embedding_matrix(out / "embeddings.npy", emb)


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of the folds' test accuracies."""
    acc = np.array([r["test_accuracy"] for r in rows], np.float64)
    return {
        "folds": [r["fold"] for r in rows],
        "num_folds": len(rows),
        "mean_test_accuracy": float(acc.mean()) if len(acc) else float("nan"),
        "std_test_accuracy": float(acc.std(ddof=1)) if len(acc) > 1 else float("nan"),
        "total_train_seconds": float(sum(r["train_seconds"] for r in rows)),
    }


def write_table(workdir: Path, config: ConfigDict, rows: Sequence[dict[str, Any]]) -> None:
    """``cv_results.json`` and a markdown table ``cv_results.md`` in ``workdir``."""
    summary = summarize(rows)
    blob = {"model": config.model, "dataset": config.dataset, "rows": list(rows), **summary}
    (workdir / "cv_results.json").write_text(json.dumps(blob, indent=1) + "\n")
    lines = [
        f"Cross-validation of {config.model} on {config.dataset}",
        "",
        "| fold | test accuracy | test loss | steps | train seconds |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['fold']} | {100 * r['test_accuracy']:.2f}% | {r['test_loss']:.4f} | "
            f"{r['steps']} | {r['train_seconds']:.0f} |"
        )
    lines.append(
        f"| mean of {summary['num_folds']} | {100 * summary['mean_test_accuracy']:.2f}% "
        f"(std {100 * summary['std_test_accuracy']:.2f}) | | | "
        f"{summary['total_train_seconds']:.0f} |"
    )
    (workdir / "cv_results.md").write_text("\n".join(lines) + "\n")


def cross_validate(
    config: ConfigDict,
    workdir: str | os.PathLike,
    folds: Sequence[int],
    *,
    vectors: tuple[list[str], Any] | None = None,
    train: Callable[[ConfigDict, str], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Trains and evaluates ``config`` once per fold (see the module docstring).

    Args:
      config: the experiment config (its ``dataset`` must have a ``fold`` option).
      workdir: the directory of the folds' workdirs and the table.
      folds: the folds to run.
      vectors: ``(words, vectors)`` of pre-trained word vectors, for the static modes.
      train: the training function (default ``cnn_jax.train.train_and_evaluate``).

    Returns:
      One row per finished fold: ``fold``, ``test_accuracy``, ``test_loss``, ``steps``,
      ``train_seconds``, ``wall_seconds``. A fold whose run is interrupted (SIGTERM:
      the loop checkpoints and returns) ends the cross-validation; rerunning resumes it.

    Raises:
      ValueError: if the data set has no ``fold`` option, or a static mode lacks
        ``vectors``.
    """
    from cnn_jax.data import get_dataset_info

    if train is None:
        from cnn_jax.train import train_and_evaluate as train
    if "fold" not in get_dataset_info(config.dataset).options:
        raise ValueError(f"data set `config.dataset` (={config.dataset!r}) has no folds")
    static = config.model_kwargs.get("mode", "rand") in ("static", "non-static")
    if static and vectors is None and not config.model_kwargs.get("embeddings"):
        raise ValueError(
            f"`config.model_kwargs.mode` (={config.model_kwargs.mode!r}) needs word vectors: "
            "pass --vectors"
        )
    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for fold in folds:
        fold_dir = root / f"fold_{fold}"
        c = copy.deepcopy(config)
        c.dataset_options.fold = fold
        if vectors is not None:
            c.model_kwargs.embeddings = fold_embeddings(c, fold, vectors, fold_dir)
        start = time.perf_counter()
        summary = train(c, os.fspath(fold_dir))
        if summary.get("preempted"):
            logging.warning("fold %d was interrupted; rerun to resume it", fold)
            break
        rows.append(
            {
                "fold": fold,
                "test_accuracy": float(summary["test_accuracy"]),
                "test_loss": float(summary["test_loss"]),
                "steps": int(summary["steps"]),
                "train_seconds": float(summary.get("train_seconds", 0.0)),
                "wall_seconds": time.perf_counter() - start,
            }
        )
        logging.info("fold %d: test accuracy %.4f", fold, rows[-1]["test_accuracy"])
        write_table(root, config, rows)
    return rows


def main(argv: list[str]) -> None:
    """Parses the flags and cross-validates."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import cnn_jax
    from cnn_jax.data.datasets import MR_NUM_FOLDS

    cnn_jax.apply_xla_cpu_defaults()
    if not FLAGS["verbosity"].present:  # the loop's INFO lines, not orbax's
        logging.get_absl_handler().addFilter(_own_info_only)
    config = FLAGS.config
    folds = parse_folds(FLAGS.folds, MR_NUM_FOLDS)
    vectors = None
    if FLAGS.vectors:
        from cnn_jax import data
        from cnn_jax.data import embeddings

        keep: set[str] = set()  # the folds' vocabularies: a 3M-word file stays on disk
        for fold in folds:
            options = {**dict(config.dataset_options), "fold": fold}
            keep.update(
                data.load_vocabulary(
                    config.dataset, config.get("data_dir"), cache_dir=config.get("cache_dir"),
                    **options,
                )
            )  # fmt: skip
        vectors = embeddings.load_word_vectors(
            FLAGS.vectors, format=FLAGS.vectors_format, vocabulary=keep
        )
    rows = cross_validate(config, FLAGS.workdir, folds, vectors=vectors)
    summary = summarize(rows)
    print(Path(FLAGS.workdir, "cv_results.md").read_text())
    logging.info("mean test accuracy over %d folds: %.4f", len(rows), summary["mean_test_accuracy"])


if __name__ == "__main__":
    _define_flags()
    app.run(main)
