"""Figures (matplotlib, the ``viz`` extra): each function returns a ``Figure``.

:func:`save` writes one as a PNG and closes it. matplotlib is imported when a figure
is drawn (with the ``Agg`` backend when no backend was chosen and there is no display),
so ``import cnn_jax.viz`` works without it.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "confusion_figure",
    "curves_figure",
    "feature_map_grid",
    "filter_grid",
    "image_rows",
    "save",
    "to_display",
]

Figure = Any


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('cnn_jax.viz figures need matplotlib: pip install "cnn_jax[viz]"') from e
    if (
        "matplotlib.pyplot" not in sys.modules
        and not os.environ.get("DISPLAY")
        and not os.environ.get("MPLBACKEND")
    ):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Figure, path: str, dpi: int = 100) -> str:
    """Writes ``fig`` to ``path`` (PNG), closes it and returns ``path``."""
    plt = _plt()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def to_display(image: Any, symmetric: bool = False) -> np.ndarray:
    """Scales an ``(H, W)`` or ``(H, W, C)`` array to ``[0, 1]`` for ``imshow``.

    Min-max scaling; ``symmetric`` maps ``[-m, m]`` (``m`` the largest magnitude) so
    that 0 is mid-grey. One channel comes back as ``(H, W)``.
    """
    a = np.asarray(image, np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if symmetric:
        m = np.abs(a).max()
        return 0.5 + 0.5 * a / m if m > 0 else np.full_like(a, 0.5)
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _grid(n: int, cols: int | None) -> tuple[int, int]:
    cols = cols or math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _tiles(
    tiles: Sequence[np.ndarray],
    titles: Sequence[str] | None,
    cols: int | None,
    title: str,
    cmap: str,
) -> Figure:
    plt = _plt()
    rows, cols = _grid(len(tiles), cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(tiles):
            t = tiles[i]
            ax.imshow(
                t, cmap=None if t.ndim == 3 else cmap, vmin=0, vmax=1, interpolation="nearest"
            )
            if titles:
                ax.set_title(titles[i], fontsize=6)
    fig.suptitle(title, fontsize=9)
    return fig


def filter_grid(
    kernel: Any, max_filters: int | None = None, max_inputs: int = 8, title: str = ""
) -> Figure:
    """The filters of a convolution, ``kernel`` ``(kh, kw, C_in, C_out)``.

    With 3 input channels (a first layer on RGB) each filter is one colour tile
    (min-max scaled per filter); otherwise each filter is a row of per-input-channel
    grey tiles (the first ``max_inputs``), 0 at mid-grey. ``max_filters`` (default 64
    colour or single-channel tiles, 16 rows of per-channel tiles) caps the filters shown.

    Raises:
      ValueError: for a kernel that is not 4-D.
    """
    k = np.asarray(kernel, np.float64)
    if k.ndim != 4:
        raise ValueError(f"`kernel` must be (kh, kw, C_in, C_out), got shape {k.shape}")
    if max_filters is None:
        max_filters = 64 if k.shape[2] in (1, 3) else 16
    n = min(k.shape[-1], max_filters)
    if k.shape[2] == 3:
        return _tiles([to_display(k[..., o]) for o in range(n)], None, None, title, "gray")
    cin = min(k.shape[2], max_inputs)
    tiles = [to_display(k[:, :, i, o], symmetric=True) for o in range(n) for i in range(cin)]
    if cin == 1:
        return _tiles(tiles, None, None, title, "gray")
    return _tiles(
        tiles, None, cin, title + f"\n(rows: filters; columns: input channels 0..{cin - 1})", "gray"
    )


def feature_map_grid(activation: Any, max_maps: int = 64, title: str = "") -> Figure:
    """Each channel of one example's ``(H, W, C)`` activation as a grey tile (min-max).

    Raises:
      ValueError: for an activation that is not 3-D.
    """
    a = np.asarray(activation)
    if a.ndim != 3:
        raise ValueError(f"`activation` must be (H, W, C) (one example), got shape {a.shape}")
    n = min(a.shape[-1], max_maps)
    return _tiles(
        [to_display(a[..., c]) for c in range(n)],
        [str(c) for c in range(n)],
        None,
        title,
        "viridis",
    )


def image_rows(
    rows: Mapping[str, Sequence[Any]],
    titles: Sequence[str] | None = None,
    title: str = "",
    cmaps: Mapping[str, str] | None = None,
) -> Figure:
    """Rows of images, one labelled row per key; ``titles`` over the first row's columns.

    Each image is ``(H, W)`` or ``(H, W, C)``, scaled by :func:`to_display`.
    """
    plt = _plt()
    names = list(rows)
    cols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(
        len(names), cols, figsize=(1.2 * cols, 1.25 * len(names) + 0.4), squeeze=False
    )
    for r, name in enumerate(names):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(rows[name]):
                ax.axis("off")
                continue
            img = to_display(rows[name][c])
            cmap = (cmaps or {}).get(name, "gray")
            ax.imshow(
                img, cmap=None if img.ndim == 3 else cmap, vmin=0, vmax=1, interpolation="nearest"
            )
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def curves_figure(series: Mapping[str, Mapping[str, tuple[Any, Any]]], title: str = "") -> Figure:
    """Loss and accuracy against step, train and test, from ``analysis.read_metrics``.

    One panel per metric among ``loss``, ``accuracy`` / ``top1`` and ``learning_rate``
    that the run logged; every split that has it is a line.
    """
    plt = _plt()
    wanted = ("loss", "accuracy", "top1", "learning_rate")
    names = [m for m in wanted if any(m in s for s in series.values())]
    if not names:
        names = sorted({m for s in series.values() for m in s})[:3]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for split, metrics in sorted(series.items()):
            if name in metrics:
                steps, vals = metrics[name]
                ax.plot(steps, vals, marker="o" if len(steps) < 30 else None, ms=3, label=split)
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
        if name == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_figure(
    matrix: Any, class_names: Sequence[str] | None = None, title: str = ""
) -> Figure:
    """A confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    plt = _plt()
    m = np.asarray(matrix)
    k = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    fig, ax = plt.subplots(figsize=(0.45 * k + 1.8, 0.45 * k + 1.4))
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(k), names, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
