r"""Epochs to a training error, from training runs' logs: AlexNet's ReLU-against-tanh figure.

Example (the runs of docs/RESULTS.md, "Activations"):
  python -m experiments.claims_activations \
      --runs=relu=runs/activations_to25/relu,tanh=runs/activations_to25/tanh \
      --out=runs/claims_activations

Reads each run's ``metrics.jsonl`` (the training rows: running accuracy over the steps
since the previous log line) and, for each threshold, the first logged step whose
training error (1 - accuracy) is at or below it, in steps and epochs (the rule of
``cnn_jax.study.Derived``). A run that never gets there is reported as "not reached
after N epochs", N its last logged step in epochs, and the ratio to the first run as a
lower bound. Writes ``activations.json``, ``activations.md`` and ``activations.png``
(training error against epochs, a line at each threshold) into ``--out``.
"""

from __future__ import annotations

import json
import math
import os

from absl import app, flags

FLAGS = flags.FLAGS
#: The thresholds reported (training error).
THRESHOLDS = (0.5, 0.4, 0.3, 0.25)


def _define_flags() -> None:
    """The command's flags, defined when it runs (importing the module defines none)."""
    flags.DEFINE_list("runs", None, "name=workdir pairs; the first is the reference.")
    flags.DEFINE_string("out", None, "Where the table and figure go.")
    flags.DEFINE_integer("train_size", 50_000, "Training examples per epoch.")
    flags.mark_flags_as_required(["runs", "out"])


def train_curve(workdir: str) -> tuple[list[int], list[float], int]:
    """``(steps, training errors, batch size)`` of the run's logged training rows."""
    with open(os.path.join(workdir, "config.json")) as f:
        batch = int(json.load(f)["config"]["batch_size"])
    steps, errors = [], []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line) if line.strip() else {}
            if row.get("split") == "train" and "accuracy" in row:
                if steps and row["step"] <= steps[-1]:  # a resumed run may log a step again
                    continue
                steps.append(int(row["step"]))
                errors.append(1.0 - float(row["accuracy"]))
    if not steps:
        raise ValueError(f"run {workdir!r} has no logged training accuracy")
    return steps, errors, batch


def first_crossing(steps: list[int], errors: list[float], threshold: float) -> float:
    """The first logged step with error ``<= threshold`` (NaN if none)."""
    return next((float(s) for s, e in zip(steps, errors) if e <= threshold), math.nan)


def analyse(runs: dict[str, str], train_size: int) -> dict:
    """Every run's epochs to each threshold, and the ratios to the first run."""
    out: dict = {"thresholds": list(THRESHOLDS), "runs": {}}
    for name, workdir in runs.items():
        steps, errors, batch = train_curve(workdir)
        per_step = batch / train_size
        out["runs"][name] = {
            "workdir": workdir,
            "epochs_logged": steps[-1] * per_step,
            "final_train_error": errors[-1],
            "epochs_to": {str(t): first_crossing(steps, errors, t) * per_step for t in THRESHOLDS},
            "curve": {"epochs": [s * per_step for s in steps], "error": errors},
        }
    ref = next(iter(out["runs"].values()))
    for r in out["runs"].values():
        r["ratio"] = {}
        for t in THRESHOLDS:
            a, b = r["epochs_to"][str(t)], ref["epochs_to"][str(t)]
            if math.isnan(b):
                r["ratio"][str(t)] = None
            elif math.isnan(a):  # not reached: at least its logged length over the reference
                r["ratio"][str(t)] = {"at_least": r["epochs_logged"] / b}
            else:
                r["ratio"][str(t)] = a / b
    return out


def table(res: dict) -> str:
    """The markdown table: epochs to each threshold, ratio to the first run."""
    names = list(res["runs"])
    head = "| run | epochs logged | " + " | ".join(
        f"epochs to {round(100 * t)}%" for t in THRESHOLDS
    )
    lines = [head + " | final train error |", "|---" * (len(THRESHOLDS) + 3) + "|"]
    for name in names:
        r = res["runs"][name]
        cells = []
        for t in THRESHOLDS:
            e, ratio = r["epochs_to"][str(t)], r["ratio"][str(t)]
            if math.isnan(e):
                text = f"not reached after {r['epochs_logged']:.2f}"
                if isinstance(ratio, dict):
                    text += f" (ratio >= {ratio['at_least']:.2f})"
            else:
                text = f"{e:.2f}"
                if name != names[0] and ratio is not None:
                    text += f" (ratio {ratio:.2f})"
            cells.append(text)
        lines.append(
            f"| {name} | {r['epochs_logged']:.2f} | "
            + " | ".join(cells)
            + f" | {100 * r['final_train_error']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def plot(res: dict, path: str) -> None:
    """Training error against epochs, one curve per run, the thresholds dotted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, r in res["runs"].items():
        ax.plot(r["curve"]["epochs"], [100 * e for e in r["curve"]["error"]], label=name, lw=1)
    ax.axhline(25, color="k", ls=":", lw=1)
    ax.set_xlabel("epochs")
    ax.set_ylabel("training error (%), running over 20 steps")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("AlexNet's four-layer CIFAR-10 CNN: time to 25% training error", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv: list[str]) -> None:
    """Reads the runs, writes the table, JSON and figure."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    runs = {}
    for pair in FLAGS.runs:
        name, sep, workdir = pair.partition("=")
        if not sep or not name or not os.path.isdir(workdir):
            raise app.UsageError(f"--runs entry {pair!r} is not name=<existing workdir>")
        runs[name] = workdir
    res = analyse(runs, FLAGS.train_size)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "activations.json"), "w") as f:
        json.dump(res, f, indent=1)
    text = table(res)
    with open(os.path.join(FLAGS.out, "activations.md"), "w") as f:
        f.write(text)
    plot(res, os.path.join(FLAGS.out, "activations.png"))
    print(text)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
