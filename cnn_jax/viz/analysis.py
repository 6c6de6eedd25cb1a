"""Numbers behind the figures: top-k activations per unit, confusion matrices, metric logs.

* :func:`top_activations`: for chosen channels of a layer, the ``k`` strongest
  activations over a data set (image, row, column, value), as Zeiler & Fergus' figure 2
  collects them; :func:`crop` cuts an image patch such as a unit's receptive field
  (``cnn_jax.viz.stacks.receptive_box``).
* :func:`confusion_matrix`: counts of (true, predicted) class pairs.
* :func:`read_metrics`: a workdir's ``metrics.jsonl`` (or ``metrics.csv``), as written by
  ``cnn_jax.train.metrics.MetricWriter``, as ``{split: {name: (steps, values)}}``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cnn_jax.train.metrics import read_jsonl

__all__ = ["confusion_matrix", "crop", "read_metrics", "top_activations"]

Array = Any


def top_activations(
    activation_fn: Callable[[Array], Array],
    images: np.ndarray,
    channels: Sequence[int],
    k: int = 9,
    batch_size: int = 256,
) -> np.ndarray:
    """The ``k`` largest activations of each channel over ``images``.

    Args:
      activation_fn: ``(B, H, W, C)`` images -> ``(B, h, w, c)`` activations of one layer.
      images: the data set, ``(N, H, W, C)``.
      channels: the channels to rank.
      k: how many per channel (at most ``N * h * w``).
      batch_size: images per call.

    Returns:
      ``(len(channels), k, 4)`` float64 rows ``(image, row, col, value)``, strongest
      first; ties go to the earlier image and position.

    Raises:
      ValueError: for a bad ``k``, ``batch_size`` or channel.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"`k` (={k!r}) must be a positive int")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` (={batch_size!r}) must be a positive int")
    chans = list(channels)
    best: np.ndarray | None = None  # (C, m, 4)
    for start in range(0, len(images), batch_size):
        act = np.asarray(activation_fn(images[start : start + batch_size]), np.float64)
        b, h, w, c = act.shape
        for ch in chans:
            if not isinstance(ch, (int, np.integer)) or not 0 <= ch < c:
                raise ValueError(f"`channels` entry {ch!r} must be an int in [0, {c})")
        vals = act[..., chans].reshape(b * h * w, len(chans)).T  # (C, b*h*w)
        n_idx, r_idx, c_idx = np.unravel_index(np.arange(b * h * w), (b, h, w))
        rows = np.stack(
            [
                np.broadcast_to(n_idx + start, vals.shape),
                np.broadcast_to(r_idx, vals.shape),
                np.broadcast_to(c_idx, vals.shape),
                vals,
            ],
            axis=-1,
        )
        merged = rows if best is None else np.concatenate([best, rows], axis=1)
        order = np.argsort(-merged[..., 3], axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(merged, order[..., None], axis=1)
    assert best is not None
    if best.shape[1] < k:
        raise ValueError(f"`k` (={k}) exceeds the {best.shape[1]} activations of a channel")
    return best


def crop(image: np.ndarray, box: tuple[int, int, int, int], fill: float = 0.0) -> np.ndarray:
    """``image[top:top+h, left:left+w]``, padded with ``fill`` where the box leaves it.

    Args:
      image: ``(H, W, C)``.
      box: ``(top, left, height, width)``.
      fill: the value outside the image.

    Returns:
      ``(height, width, C)``.
    """
    top, left, h, w = box
    out = np.full((h, w, image.shape[-1]), fill, image.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, image.shape[0]), min(left + w, image.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def confusion_matrix(labels: Any, predictions: Any, num_classes: int) -> np.ndarray:
    """``m[i, j]``: how many examples of class ``i`` were predicted as ``j``.

    Raises:
      ValueError: for mismatched lengths or a label outside ``[0, num_classes)``.
    """
    y, p = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    if y.shape != p.shape:
        raise ValueError(f"`labels` ({y.size}) and `predictions` ({p.size}) differ in length")
    for name, v in (("labels", y), ("predictions", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"`{name}` must lie in [0, {num_classes}), got [{v.min()}, {v.max()}]")
    return np.bincount(y * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def read_metrics(workdir: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The metric series of a run: ``{split: {name: (steps, values)}}``, by step.

    Reads ``metrics.jsonl``, or ``metrics.csv`` when there is no JSONL file.

    Raises:
      FileNotFoundError: naming the workdir when it has neither file.
    """
    rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    if rows is None:
        path = os.path.join(workdir, "metrics.csv")
        if not os.path.exists(path):
            raise FileNotFoundError(f"`workdir` (={workdir!r}) has no metrics.jsonl or metrics.csv")
        with open(path, newline="") as f:
            for r in list(csv.reader(f))[1:]:
                if len(r) == 4:
                    series.setdefault(r[1], {}).setdefault(r[2], []).append(
                        (int(r[0]), float(r[3]))
                    )
    else:
        for row in rows:
            split = str(row.get("split", ""))
            for name, v in row.items():
                if name not in ("step", "split") and isinstance(v, (int, float)):
                    series.setdefault(split, {}).setdefault(name, []).append(
                        (row["step"], float(v))
                    )
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for split, names in series.items():
        out[split] = {}
        for name, pts in names.items():
            pts.sort(key=lambda sv: sv[0])
            out[split][name] = (np.array([s for s, _ in pts]), np.array([v for _, v in pts]))
    return out
