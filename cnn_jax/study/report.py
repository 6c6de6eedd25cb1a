"""A study's report from its cells' metrics files: ``results.json``, ``table.md``, ``curves.png``.

Per cell (from ``cells/<name>/metrics.jsonl``, written by ``cnn_jax.train.metrics``):

* final test metrics: the last ``test`` row (``accuracy``, ``loss``);
* final train metrics: the last ``train`` row, i.e. the mean over the last logging
  window of the training batches (with the run's augmentation and dropout);
* each :class:`~cnn_jax.study.spec.Derived` column: the first logged step that crosses
  its threshold, also in epochs (examples seen / training-set size).

Per setting (a value on every axis): the mean and sample standard deviation over the
seeds of every number, over the cells that finished (a diverged cell counts in
``diverged``, not in the means; a derived metric not reached by some seed is
reported as "not reached (k/n)").
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from cnn_jax.study.runner import cell_dir, read_cell
from cnn_jax.study.spec import Cell, Study, cells
from cnn_jax.train.metrics import atomic_write, read_jsonl

__all__ = ["FINAL_METRICS", "collect", "write_report"]

#: The final numbers of every cell: ``(column, split, row key)``.
FINAL_METRICS = (
    ("test_accuracy", "test", "accuracy"),
    ("test_loss", "test", "loss"),
    ("train_accuracy", "train", "accuracy"),
    ("train_loss", "train", "loss"),
)


def _train_size(config: Any) -> int | None:
    from cnn_jax.data import get_dataset_info

    options = dict(config.get("dataset_options") or {})
    if "train_size" in options:
        return int(options["train_size"])
    try:
        return int(get_dataset_info(config.dataset).split_sizes["train"])
    except (KeyError, ValueError):
        return None


def _value(row: dict[str, Any], metric: str) -> float | None:
    if metric == "error":
        return None if "accuracy" not in row else 1.0 - float(row["accuracy"])
    return None if metric not in row else float(row[metric])


def _cell_result(study: Study, workdir: str, cell: Cell) -> dict[str, Any]:
    record = read_cell(workdir, cell)
    rows = read_jsonl(os.path.join(cell_dir(workdir, cell), "metrics.jsonl")) or []
    n = _train_size(cell.config)
    per_step = int(cell.config.batch_size) / n if n else None
    curves = {
        split: [
            {k: r[k] for k in ("step", "loss", "accuracy") if k in r}
            for r in rows
            if r.get("split") == split
        ]
        for split in ("train", "test")
    }
    status = "running" if record is None else record["status"]
    final: dict[str, float] = {}
    for column, split, key in FINAL_METRICS:
        last = curves[split][-1] if curves[split] and status == "done" else None
        final[column] = float(last[key]) if last is not None and key in last else math.nan
    derived: dict[str, dict[str, float]] = {}
    for d in study.derived:
        step = math.nan
        for r in curves[d.split]:
            v = _value(r, d.metric)
            if v is not None and (v <= d.threshold if d.below else v >= d.threshold):
                step = float(r["step"])
                break
        epochs = step * per_step if per_step is not None else math.nan
        derived[d.name] = {"steps": step, "epochs": epochs}
    return {
        "name": cell.name,
        "labels": list(cell.labels),
        "seed": cell.seed,
        "status": status,
        "message": "" if record is None else record.get("message", ""),
        "summary": {} if record is None else record.get("summary", {}),
        "epochs_per_step": per_step,
        "final": final,
        "derived": derived,
        "curves": curves,
    }


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if math.isfinite(x)], np.float64)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    std = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
    return {"mean": float(np.mean(v)), "std": std, "n": int(v.size)}


def collect(study: Study, workdir: str) -> dict[str, Any]:
    """Every cell's numbers and curves, and their mean and std per setting."""
    results = [_cell_result(study, workdir, c) for c in cells(study)]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(tuple(r["labels"]), []).append(r)
    settings = []
    for labels, members in groups.items():
        done = [m for m in members if m["status"] == "done"]
        entry = {
            "labels": list(labels),
            "seeds": len(members),
            "done": len(done),
            "diverged": sum(m["status"] == "diverged" for m in members),
            "final": {k: _stats([m["final"][k] for m in done]) for k, _, _ in FINAL_METRICS},
            "derived": {
                d.name: {
                    unit: _stats([m["derived"][d.name][unit] for m in done])
                    for unit in ("steps", "epochs")
                }
                for d in study.derived
            },
        }
        settings.append(entry)
    return {
        "study": study.name,
        "description": study.description,
        "axes": [{"key": a.key, "labels": list(a.names())} for a in study.axes],
        "seeds": list(study.seeds),
        "settings": settings,
        "cells": results,
    }


def _fmt(s: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    if s["n"] == 0:
        return "-"
    m = s["mean"] * scale
    if not math.isfinite(s["std"]):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s['std'] * scale:.{digits}f}"


def _table(res: dict[str, Any], study: Study) -> str:
    axes = [a["key"] for a in res["axes"]]
    head = [*axes, "runs", "test acc. (%)", "test loss", "train acc. (%)", "train loss"]
    head += [f"{d.name} (epochs)" for d in study.derived]
    lines = [f"# Study: {res['study']}", ""]
    if res["description"]:
        lines += [res["description"], ""]
    lines += [
        f"Mean ± sample std over seeds {res['seeds']} (runs: finished/seeds; "
        "train numbers are the mean over the last logging window).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for s in res["settings"]:
        runs = f"{s['done']}/{s['seeds']}" + (
            f" ({s['diverged']} diverged)" if s["diverged"] else ""
        )
        f = s["final"]
        row = [
            *s["labels"],
            runs,
            _fmt(f["test_accuracy"], 100),
            _fmt(f["test_loss"], 1, 4),
            _fmt(f["train_accuracy"], 100),
            _fmt(f["train_loss"], 1, 4),
        ]
        for d in study.derived:
            e = s["derived"][d.name]["epochs"]
            missing = s["done"] - e["n"]
            text = _fmt(e, 1, 2) if e["n"] else "not reached"
            row.append(
                text + (f" (not reached {missing}/{s['done']})" if e["n"] and missing else "")
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _plot(res: dict[str, Any], path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8))
    FigureCanvasAgg(fig)
    panels = [
        ("train", "loss", "training loss"),
        ("train", "error", "training error"),
        ("test", "error", "test error"),
    ]
    axes = fig.subplots(1, len(panels))
    keys = " / ".join(a["key"] for a in res["axes"])
    for ax, (split, metric, title) in zip(axes, panels, strict=True):
        for s in res["settings"]:
            members = [c for c in res["cells"] if c["labels"] == s["labels"] and c["curves"][split]]
            if not members:
                continue
            n = min(len(c["curves"][split]) for c in members)
            steps = np.asarray([r["step"] for r in members[0]["curves"][split][:n]], np.float64)
            vals = np.asarray(
                [
                    [
                        _value(r, metric) if _value(r, metric) is not None else np.nan
                        for r in c["curves"][split][:n]
                    ]
                    for c in members
                ],
                np.float64,
            )
            x = steps * (members[0]["epochs_per_step"] or 1.0)
            ax.plot(
                x,
                np.nanmean(vals, 0),
                marker="." if n < 30 else None,
                label=" / ".join(s["labels"]),
            )
        ax.set_title(title)
        ax.set_xlabel("epochs" if res["cells"] and res["cells"][0]["epochs_per_step"] else "steps")
        if metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if axes[0].lines:
        axes[0].legend(title=keys, fontsize=7, title_fontsize=7)
    fig.suptitle(f"{res['study']} (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def write_report(study: Study, workdir: str) -> dict[str, Any]:
    """Writes ``results.json``, ``table.md`` and ``curves.png`` into ``workdir``.

    Returns:
      The results (as written to ``results.json``).
    """
    res = collect(study, workdir)
    atomic_write(os.path.join(workdir, "results.json"), json.dumps(res, indent=1) + "\n")
    atomic_write(os.path.join(workdir, "table.md"), _table(res, study))
    _plot(res, os.path.join(workdir, "curves.png"))
    return res
