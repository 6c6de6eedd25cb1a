r"""Figures of trained segmentation models: predictions next to the ground truth.

Commands (from the repository root, after runs of ``experiments/configs/*_digits.py``):
  python -m experiments.segmentation_figures --runs=unet_digits:cpu=runs/seg/unet_digits
  python -m experiments.segmentation_figures \
      --runs=unet_digits:cpu=runs/seg/unet_digits,segnet_digits:cpu=runs/seg/segnet_digits \
      --out=docs/results/figures/segmentation_digits.png

Each run is ``<config module in experiments/configs>[:variant]=<workdir>``. For one run
the figure ``segmentation_predictions.png`` goes into its workdir (unless ``--out``);
for several, one figure compares them on the same test images: a row of inputs, a row
of ground-truth label maps, and a row of predictions per model (background black, one
colour per digit class). Models are rebuilt from the config and their variables read
from the newest checkpoint of the workdir.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
from absl import app, flags


def _define_flags() -> None:
    """Defines the flags (when run as a script, so that importing defines none)."""
    flags.DEFINE_list("runs", None, "config[:variant]=workdir, one or more.")
    flags.DEFINE_integer("num_images", 6, "Test images in the figure.")
    flags.DEFINE_string("out", None, "The PNG to write (default: in the single run's workdir).")


def colorize(label: np.ndarray, num_classes: int = 11) -> np.ndarray:
    """``(H, W)`` class maps as RGB in ``[0, 1]``: class 0 black, the others tab10 colours."""
    import matplotlib

    colours = np.zeros((max(num_classes, 11), 3))
    colours[1:11] = matplotlib.colormaps["tab10"](np.arange(10))[:, :3]
    return colours[np.clip(label, 0, len(colours) - 1)]


def load_run(spec: str) -> tuple[str, Any, dict[str, Any], Any]:
    """``(name, model, variables, config)`` of ``config[:variant]=workdir``."""
    from cnn_jax.train.restore import load_run as restore_run

    if "=" not in spec:
        raise ValueError(f"`--runs` entry (={spec!r}) must be config[:variant]=workdir")
    cfg, workdir = spec.split("=", 1)
    name, _, variant = cfg.partition(":")
    config = importlib.import_module(f"experiments.configs.{name}").get_config(variant or None)
    run = restore_run(workdir, config)
    model, variables = run.model, run.variables
    return name.removesuffix("_digits"), model, variables, config


def predict(model: Any, variables: dict[str, Any], images: np.ndarray) -> np.ndarray:
    """Predicted class maps ``(N, H, W)`` for uint8 images."""
    import jax
    import jax.numpy as jnp

    logits, _ = jax.jit(lambda x: model.apply(variables, x))(
        jnp.asarray(images, jnp.float32) / 255.0
    )
    return np.asarray(jnp.argmax(logits, -1))


def plot(images: np.ndarray, truth: np.ndarray, predictions: dict[str, np.ndarray]) -> Any:
    """The figure: inputs, ground truth, then one row per model."""
    import matplotlib.pyplot as plt

    n = len(images)
    rows = [("input", None), ("ground truth", truth), *predictions.items()]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.35 * len(rows)), squeeze=False)
    for r, (title, maps) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            if maps is None:
                ax.imshow(images[i, ..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(colorize(maps[i]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def write_figure(specs: list[str], num_images: int = 6, out: str | None = None) -> str:
    """Writes the figure of the runs ``specs`` and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnn_jax import data

    predictions, test = {}, None
    for spec in specs:
        name, model, variables, config = load_run(spec)
        if test is None:
            test = data.load_dataset(
                config.dataset, "test", config.get("data_dir"), **dict(config.dataset_options)
            )
        predictions[name] = predict(model, variables, test["image"][:num_images])
    assert test is not None
    if out is None:
        if len(specs) != 1:
            raise ValueError("`--out` is needed for several runs")
        out = os.path.join(specs[0].split("=", 1)[1], "segmentation_predictions.png")
    fig = plot(test["image"][:num_images], test["label"][:num_images], predictions)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str]) -> None:
    """Writes the figure and prints its path."""
    del argv
    print(write_figure(flags.FLAGS.runs, flags.FLAGS.num_images, flags.FLAGS.out))


if __name__ == "__main__":
    _define_flags()
    flags.mark_flags_as_required(["runs"])
    app.run(main)
