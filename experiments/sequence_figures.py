"""Figures of the speech and sentence runs, from their workdirs' metrics.

  python -m experiments.sequence_figures --curves TDNN=runs/tdnn_fsdd \
      --curves "2-D CNN=runs/spectrogram_cnn_fsdd" --out docs/results/figures/speech_fsdd.png
  python -m experiments.sequence_figures --cv "CNN-rand=runs/textcnn_mr_cv" \
      --cv "dilated=runs/dilated_textcnn_mr_cv" --out docs/results/figures/textcnn_mr_cv.png

``--curves LABEL=WORKDIR``: test accuracy against the training step, one line per run
(``metrics.jsonl``). ``--cv LABEL=WORKDIR``: each fold's test accuracy and the mean, one
group per ``experiments.cross_validate`` workdir (``cv_results.json``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defines the flags (when run as a script, so that importing defines none)."""
    flags.DEFINE_multi_string("curves", [], "LABEL=WORKDIR of a training run.")
    flags.DEFINE_multi_string("cv", [], "LABEL=WORKDIR of a cross-validation.")
    flags.DEFINE_string("out", None, "The PNG to write.")
    flags.mark_flags_as_required(["out"])


def _pairs(items: Sequence[str]) -> list[tuple[str, Path]]:
    out = []
    for item in items:
        label, sep, workdir = item.partition("=")
        if not sep or not label or not workdir:
            raise ValueError(f"expected LABEL=WORKDIR, got {item!r}")
        out.append((label, Path(workdir)))
    return out


def accuracy_curve(workdir: Path) -> tuple[list[int], list[float]]:
    """Steps and test accuracies (%) of a run's ``metrics.jsonl``."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    test = sorted((r["step"], 100 * r["accuracy"]) for r in rows if r["split"] == "test")
    return [s for s, _ in test], [a for _, a in test]


def write_figure(curves: Sequence[str], cvs: Sequence[str], out: str) -> str:
    """Plots the runs (see the module docstring); returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = int(bool(curves)) + int(bool(cvs))
    if panels == 0:
        raise ValueError("give --curves or --cv")
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.4), squeeze=False)
    ax_iter = iter(axes[0])
    if curves:
        ax = next(ax_iter)
        for label, workdir in _pairs(curves):
            steps, acc = accuracy_curve(workdir)
            ax.plot(steps, acc, marker="o", ms=3, label=f"{label} (final {acc[-1]:.1f}%)")
        ax.set(xlabel="training step", ylabel="test accuracy (%)", title="held-out speaker")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if cvs:
        ax = next(ax_iter)
        for i, (label, workdir) in enumerate(_pairs(cvs)):
            blob = json.loads((workdir / "cv_results.json").read_text())
            folds = [r["fold"] for r in blob["rows"]]
            acc = [100 * r["test_accuracy"] for r in blob["rows"]]
            mean = 100 * blob["mean_test_accuracy"]
            ax.scatter([f + 0.15 * i for f in folds], acc, label=f"{label}: mean {mean:.1f}%")
            ax.axhline(mean, ls="--", lw=1, color=f"C{i}")
        ax.set(xlabel="fold", ylabel="test accuracy (%)", title="MR cross-validation")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str]) -> None:
    """Writes the figure of the flags."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    print(write_figure(FLAGS.curves, FLAGS.cv, FLAGS.out))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
