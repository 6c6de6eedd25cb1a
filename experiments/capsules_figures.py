"""Figures of a trained CapsNet: reconstructions, the DigitCaps perturbation grid, routing.

Command (from the repository root, after a run of ``experiments/configs/capsnet_*.py``):
  python -m experiments.capsules_figures --config=experiments/configs/capsnet_mnist.py \
      --workdir=runs/capsnet_mnist

Writes into ``--workdir`` (PNG, matplotlib):

* ``capsules_reconstructions.png``: test images (titled with their true and predicted
  classes) over their reconstructions from the longest capsule (MultiMNIST: each of
  the two longest capsules reconstructed separately, the longest in red, the second
  in green, overlaid; yellow where both draw);
* ``capsules_perturbations.png``: the paper's figure 4 for one test digit: each of the
  16 dimensions of its DigitCaps vector moved by -0.25 ... 0.25 in steps of 0.05, the
  others kept, through the decoder;
* ``capsules_routing.png``: the coupling coefficients of one input across the routing
  iterations (each primary capsule's coefficients over the 10 classes, and their mean
  per class).

The model is rebuilt from the config and its parameters read from the newest
checkpoint in ``<workdir>/checkpoints``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import app, flags
from ml_collections import config_flags


def _define_flags() -> None:
    config_flags.DEFINE_config_file("config", None, "The run's config file (optionally :variant).")
    flags.DEFINE_string("workdir", None, "The run's directory (its checkpoints; figures go here).")
    flags.DEFINE_integer("num_images", 8, "Test images in the reconstruction figure.")
    flags.DEFINE_integer("index", 0, "The test example of the perturbation and routing figures.")


#: The paper's perturbation steps.
PERTURBATIONS = np.round(np.arange(-0.25, 0.2501, 0.05), 2) + 0.0  # no -0.0


def perturbation_grid(decode: Any, v: np.ndarray, cls: int) -> np.ndarray:
    """Decoder outputs for each dimension of capsule ``cls`` moved by each step.

    Args:
      decode: ``(N, K, D) capsules, (N, K) mask -> (N, H, W, C)`` images.
      v: ``(K, D)`` one example's DigitCaps.
      cls: the capsule to perturb (and the only one the decoder reads).

    Returns:
      ``(D, len(PERTURBATIONS), H, W, C)``.
    """
    k, d = v.shape
    batch = np.repeat(v[None], d * len(PERTURBATIONS), axis=0).reshape(d, len(PERTURBATIONS), k, d)
    for dim in range(d):
        batch[dim, :, cls, dim] += PERTURBATIONS
    mask = np.zeros((batch.shape[0] * batch.shape[1], k), np.float32)
    mask[:, cls] = 1
    out = np.asarray(decode(batch.reshape(-1, k, d), mask))
    return out.reshape(d, len(PERTURBATIONS), *out.shape[1:])


def plot_reconstructions(images: np.ndarray, recs: np.ndarray, titles: list[str]) -> Any:
    """Inputs (top) over reconstructions (bottom); ``recs`` ``(N, R, H, W)``, R <= 2."""
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.0), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(images[i], cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(titles[i], fontsize=8)
        if recs.shape[1] == 1:
            axes[1, i].imshow(recs[i, 0], cmap="gray", vmin=0, vmax=1)
        else:  # one colour per capsule: red and green
            rgb = np.zeros((*recs.shape[2:], 3))
            rgb[..., 0], rgb[..., 1] = recs[i, 0], recs[i, 1]
            axes[1, i].imshow(np.clip(rgb, 0, 1))
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].text(-4, 14, "input", rotation=90, va="center", ha="right", fontsize=8)
    axes[1, 0].text(-4, 14, "reconstruction", rotation=90, va="center", ha="right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_perturbations(grid: np.ndarray) -> Any:
    """The ``(D, steps, H, W)`` grid, a row per dimension (the paper's figure 4)."""
    import matplotlib.pyplot as plt

    d, s = grid.shape[:2]
    fig, axes = plt.subplots(d, s, figsize=(0.7 * s, 0.7 * d), squeeze=False)
    for i in range(d):
        for j in range(s):
            axes[i, j].imshow(grid[i, j], cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(f"dim {i}", fontsize=6)
            if i == 0:
                axes[i, j].set_title(f"{PERTURBATIONS[j]:+.2f}", fontsize=6)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def plot_routing(couplings: np.ndarray, predicted: int) -> Any:
    """``(iterations, in_caps, out_caps)`` couplings of one input, per iteration."""
    import matplotlib.pyplot as plt

    r, _, k = couplings.shape
    fig, axes = plt.subplots(1, r + 1, figsize=(2.6 * (r + 1), 3.2))
    for t in range(r):
        axes[t].imshow(couplings[t], aspect="auto", cmap="viridis", vmin=0, vmax=couplings.max())
        axes[t].set_title(f"iteration {t + 1}", fontsize=9)
        axes[t].set_xlabel("class j", fontsize=8)
        axes[t].set_xticks(range(k))
    axes[0].set_ylabel("primary capsule i", fontsize=8)
    mean = couplings.mean(axis=1)  # (r, k)
    for t in range(r):
        axes[r].plot(range(k), mean[t], marker="o", label=f"iteration {t + 1}")
    axes[r].axvline(predicted, color="gray", linestyle=":")
    axes[r].set_title("mean c_ij over i", fontsize=9)
    axes[r].set_xticks(range(k))
    axes[r].legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_figures(config: Any, workdir: str, num_images: int = 8, index: int = 0) -> list[str]:
    """Writes the three PNGs into ``workdir`` and returns their paths."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnn_jax.models.capsnet import CapsuleDecoder
    from cnn_jax.train.restore import load_run, raw_split

    run = load_run(workdir, config)
    model, params, test = run.model, run.params, raw_split(config)
    images = test["image"][: max(num_images, index + 1)].astype(np.float32) / 255.0
    apply = jax.jit(lambda x: model.apply({"params": params}, x))
    lengths, feats = apply(jnp.asarray(images))
    lengths, v = np.asarray(lengths), np.asarray(feats["digit_caps"])
    decoder = CapsuleDecoder(tuple(model.decoder))
    shape = images.shape[1:]
    decode = jax.jit(
        lambda caps, mask: decoder.apply({"params": params["decoder"]}, caps, mask, shape)
    )
    top = np.argsort(-lengths, axis=-1)[:, : model.reconstruct_top]
    recs = []
    for r in range(top.shape[1]):  # each capsule on its own
        mask = np.asarray(jax.nn.one_hot(top[:, r], lengths.shape[-1]))
        recs.append(np.asarray(decode(jnp.asarray(v), jnp.asarray(mask)))[..., 0])
    recs = np.stack(recs, axis=1)
    labels = np.asarray(test["label"][: len(images)])
    true = [np.flatnonzero(lab) if lab.ndim else [int(lab)] for lab in labels]
    titles = [
        f"true {','.join(map(str, t))}\npred {','.join(map(str, p))}"
        for t, p in zip(true, top, strict=True)
    ]
    paths = []
    n = num_images
    for name, fig in (
        ("reconstructions", plot_reconstructions(images[:n, ..., 0], recs[:n], titles[:n])),
        (
            "perturbations",
            plot_perturbations(perturbation_grid(decode, v[index], top[index, 0])[..., 0]),
        ),
        ("routing", plot_routing(np.asarray(feats["couplings"])[:, index], int(top[index, 0]))),
    ):
        path = os.path.join(workdir, f"capsules_{name}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str]) -> None:
    """Writes the figures of ``--workdir`` and prints their paths."""
    del argv
    for path in write_figures(
        flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.num_images, flags.FLAGS.index
    ):
        print(path)


if __name__ == "__main__":
    _define_flags()
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
