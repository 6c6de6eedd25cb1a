r"""Learned first-layer filters of a trained run next to the hand-designed banks.

Command (from the repository root, after a run of ``alexnet_cifar10.py`` or a cell of
``study_activations.py``):
  python -m experiments.claims_filters --run=runs/study_activations/cells/<cell> \
      --out=runs/claims_filters

Writes ``first_layer_filters.png`` into ``--out``: the run's ``conv1`` kernels (the
newest checkpoint in ``<run>/checkpoints``), each RGB filter scaled to [0, 1] on its
own, and the fixed Sobel (8) and Gabor (32) banks of ``cnn_jax.models.fixed_filters``
that ``AlexNetCifar(first_layer=...)`` uses instead.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags


def _define_flags() -> None:
    """The command's flags, defined when it runs (importing the module defines none)."""
    flags.DEFINE_string("run", None, "A training run's directory (its checkpoints).")
    flags.DEFINE_string("out", None, "Where the figure goes.")
    flags.mark_flags_as_required(["run", "out"])


def learned_kernel(run: str, layer: str = "conv1") -> np.ndarray:
    """The ``(kh, kw, C_in, C_out)`` kernel of ``layer`` in the run's newest checkpoint."""
    from cnn_jax.train.checkpoint import Checkpointer

    ckpt = Checkpointer(os.path.join(run, "checkpoints"))
    try:
        params = ckpt.restore()["params"]
    finally:
        ckpt.close()
    if layer not in params or "kernel" not in params[layer]:
        raise ValueError(f"the checkpoint of `run` (={run!r}) has no {layer}/kernel")
    return np.asarray(params[layer]["kernel"])


def tile(kernels: np.ndarray, cols: int = 8) -> np.ndarray:
    """``(kh, kw, C, n)`` kernels (C = 1 or 3) as one image, each scaled to [0, 1]."""
    kh, kw, c, n = kernels.shape
    rows = -(-n // cols)
    grid = np.ones((rows * (kh + 1) + 1, cols * (kw + 1) + 1, c), np.float32)
    for i in range(n):
        k = kernels[..., i]
        k = (k - k.min()) / max(float(k.max() - k.min()), 1e-12)
        r, q = divmod(i, cols)
        grid[1 + r * (kh + 1) : 1 + r * (kh + 1) + kh, 1 + q * (kw + 1) : 1 + q * (kw + 1) + kw] = k
    return grid[..., 0] if c == 1 else grid


def main(argv: list[str]) -> None:
    """Writes the figure."""
    del argv
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnn_jax.models.fixed_filters import gabor_bank, sobel_bank

    f = flags.FLAGS
    os.makedirs(f.out, exist_ok=True)
    learned = learned_kernel(f.run)
    panels = [
        (f"learned conv1 ({learned.shape[-1]} filters, 5x5x3)", tile(learned)),
        ("fixed Sobel bank (8)", tile(sobel_bank(5)[:, :, None, :], cols=4)),
        ("fixed Gabor bank (32)", tile(gabor_bank(5, 32)[:, :, None, :])),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img, cmap="gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path = os.path.join(f.out, "first_layer_filters.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(path)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
