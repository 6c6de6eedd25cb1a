"""Figures of a trained run: ``python -m experiments.visualize --workdir=DIR``.

Reads the run's config (``<workdir>/config.json``, recorded when it started, or
``--config``), rebuilds its model, restores the newest checkpoint in
``<workdir>/checkpoints`` and draws, on the test split prepared as in training
(padding, normalization), into ``--output_dir`` (default ``<workdir>/figures``):

* ``curves.png``: loss, accuracy and learning rate against step (``metrics.jsonl``);
* ``filters_first.png`` (and ``filters_second.png``): the first convolution's filters
  (colour tiles for RGB inputs) and the next one's, per input channel;
* ``feature_maps_<layer>.png``: every channel of ``--layers`` for one test image
  (default: a few convolutional layers; any ``cnn_jax.models.intermediates.tap`` name);
* ``confusion.png`` and ``misclassified.png`` over the first ``--num_eval`` test images;
* ``saliency.png`` (input gradients) and ``occlusion.png`` (class probability under a
  sliding grey square) for ``--num_images`` test images;
* ``deconvnet.png`` (models with a conv/ReLU/max-pool stack, ``cnn_jax.viz.stacks``):
  for the strongest channels of the last pooling layer, the receptive-field patches of
  their top activations over the evaluated images and the deconvnet projections of
  those activations, cropped alike (Zeiler & Fergus 2014, figure 2).

Example (after ``python -m experiments.main --config=experiments/configs/cnn_mnist.py
--workdir=runs/cnn_mnist``):
  python -m experiments.visualize --workdir=runs/cnn_mnist
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from absl import app, flags
from ml_collections import config_flags


def _define_flags() -> None:
    config_flags.DEFINE_config_file(
        "config", None, "The run's config (default: <workdir>/config.json)."
    )
    flags.DEFINE_string("workdir", None, "The trained run's directory.")
    flags.DEFINE_string("output_dir", None, "Where the PNGs go (default: <workdir>/figures).")
    flags.DEFINE_list(
        "layers", None, "Tap names for feature-map grids (default: a few conv layers)."
    )
    flags.DEFINE_integer(
        "num_eval", 2000, "Test images for the confusion matrix and top-k patches."
    )
    flags.DEFINE_integer("num_images", 6, "Test images in the saliency and occlusion figures.")


def load_run(workdir: str, config: Any = None, num_eval: int = 2000) -> dict[str, Any]:
    """The run's model, variables and its first ``num_eval`` test examples, as trained.

    Returns:
      ``{'config', 'model', 'variables', 'images', 'labels', 'num_classes'}``.

    Raises:
      FileNotFoundError: for a workdir without config record or checkpoint.
    """
    from cnn_jax import data
    from cnn_jax.train.restore import load_run as restore_run

    run = restore_run(workdir, config)
    info = data.get_dataset_info(run.config.dataset)
    it = data.input_pipeline(run.config, "test", rng_seed=0, training=False)
    images, labels, n = [], [], 0
    for batch in it:
        keep = np.asarray(batch["mask"], bool)
        images.append(np.asarray(batch[info.input_key])[keep])
        labels.append(np.asarray(batch["label"])[keep])
        n += int(keep.sum())
        if n >= num_eval:
            break
    return {
        "config": run.config,
        "model": run.model,
        "variables": run.variables,
        "images": np.concatenate(images)[:num_eval].astype(np.float32),
        "labels": np.concatenate(labels)[:num_eval],
        "num_classes": run.num_classes,
    }


def _conv_kernels(model: Any, variables: Any, image_channels: int) -> list[np.ndarray]:
    from cnn_jax.viz import deconvnet, stacks

    try:
        layers = stacks.deconv_stack(model, variables)
        return [np.asarray(lyr.kernel) for lyr in layers if isinstance(lyr, deconvnet.Conv)]
    except ValueError:
        import flax

        flat = flax.traverse_util.flatten_dict(variables["params"])
        ks = [np.asarray(v) for k, v in flat.items() if k[-1] == "kernel" and np.ndim(v) == 4]
        first = [k for k in ks if k.shape[2] == image_channels][:1]
        return first + [k for k in ks if k.shape[2] != image_channels][:1]


def write_figures(
    workdir: str,
    output_dir: str | None = None,
    config: Any = None,
    layers: list[str] | None = None,
    num_eval: int = 2000,
    num_images: int = 6,
) -> list[str]:
    """Draws the figures of the module docstring and returns the paths written."""
    import jax

    from cnn_jax.viz import analysis, attribution, deconvnet, plots, stacks, tap, tap_names

    run = load_run(workdir, config, num_eval)
    model, v, x, y = run["model"], run["variables"], run["images"], run["labels"]
    out = output_dir or os.path.join(workdir, "figures")
    os.makedirs(out, exist_ok=True)
    paths: list[str] = []
    name = run["config"].model

    def save(fig: Any, fname: str) -> None:
        paths.append(plots.save(fig, os.path.join(out, fname)))

    series = analysis.read_metrics(workdir)
    save(plots.curves_figure(series, f"{name}: training curves"), "curves.png")

    kernels = _conv_kernels(model, v, x.shape[-1])
    for label, k in zip(("first", "second"), kernels[:2], strict=False):
        save(
            plots.filter_grid(k, title=f"{name}: {label} conv filters {k.shape}"),
            f"filters_{label}.png",
        )

    score = jax.jit(lambda xx: model.apply(v, xx, train=False)[0])
    logits = np.concatenate([np.asarray(score(x[i : i + 500])) for i in range(0, len(x), 500)])
    pred = logits.argmax(-1)
    cm = analysis.confusion_matrix(y, pred, run["num_classes"])
    acc = float(np.trace(cm) / cm.sum())
    save(
        plots.confusion_figure(cm, title=f"{name}: {len(y)} test images, {acc:.2%} correct"),
        "confusion.png",
    )
    wrong = np.flatnonzero(pred != y)[:16]
    if wrong.size:
        fig = plots.image_rows(
            {"misclassified": list(x[wrong])},
            [f"{y[i]}->{pred[i]}" for i in wrong],
            f"{name}: true->predicted",
        )
        save(fig, "misclassified.png")

    try:
        stack = stacks.deconv_stack(model, v)
    except ValueError:
        stack = None
    if layers is None:
        if stack is not None:
            relus = [lyr.name for lyr in stack if isinstance(lyr, deconvnet.ReLU)]
            layers = [relus[0], relus[-1]]
        else:
            shapes = tap_names(model, v, x[:1])
            layers = [k for k, (s, _) in shapes.items() if len(s) == 4 and "/" not in k][:2]
    names = [lyr.name for lyr in stack] if stack is not None else []
    if all(layer in names for layer in layers):  # the stack's names (e.g. ReLU outputs)
        trace = deconvnet.forward(stack, x[:1])
        acts = {layer: trace[layer] for layer in layers}
    else:
        acts = tap(model, v, x[:1], layers)
    for layer in layers:
        save(
            plots.feature_map_grid(acts[layer][0], title=f"{name}: {layer}, test image 0"),
            f"feature_maps_{layer.replace('/', '_')}.png",
        )

    sel = np.arange(min(num_images, len(x)))
    sal, _ = attribution.saliency(score, x[sel], pred[sel])
    h = x.shape[1]
    patch, stride = max(h // 5, 2), max(h // 14, 1)
    occ = attribution.occlusion(score, x[sel], y[sel], patch=patch, stride=stride, value=0.0)
    titles = [f"label {y[i]}, pred {pred[i]}" for i in sel]
    save(
        plots.image_rows(
            {"image": list(x[sel]), "|d score/dx|": list(sal)},
            titles,
            f"{name}: gradient saliency of the predicted class",
            {"|d score/dx|": "hot"},
        ),
        "saliency.png",
    )
    save(
        plots.image_rows(
            {"image": list(x[sel]), "p(label)": list(occ)},
            titles,
            f"{name}: occlusion ({patch}px square, stride {stride}): probability of the label",
            {"p(label)": "viridis"},
        ),
        "occlusion.png",
    )

    if stack is not None:
        paths.append(_deconv_figure(stack, x, name, os.path.join(out, "deconvnet.png")))
    return paths


def _deconv_figure(
    stack: list[Any], x: np.ndarray, name: str, path: str, channels: int = 4, k: int = 6
) -> str:
    """Top-k receptive-field patches and their deconvnet projections, per channel."""
    import jax

    from cnn_jax.viz import deconvnet, plots, top_projections

    layer = [lyr.name for lyr in stack if isinstance(lyr, deconvnet.MaxPool)][-1]
    act_fn = jax.jit(lambda xx: deconvnet.forward(stack, xx, upto=layer).outputs[-1])
    strength = np.mean(
        [
            np.asarray(act_fn(x[i : i + 500])).max(axis=(1, 2)).mean(0)
            for i in range(0, len(x), 500)
        ],
        axis=0,
    )
    chans = [int(c) for c in np.argsort(-strength)[:channels]]
    tp = top_projections(stack, x, layer, chans, k=k, batch_size=500)
    rows: dict[str, list[np.ndarray]] = {}
    for ci, ch in enumerate(tp.channels):
        rows[f"ch {ch} patches"] = list(tp.patches[ci])
        rows[f"ch {ch} deconv"] = list(tp.projections[ci])
    title = f"{name}: top-{k} activations of {layer} channels (Zeiler & Fergus fig. 2)"
    return plots.save(plots.image_rows(rows, None, title), path)


def main(argv: list[str]) -> None:
    """Writes the figures and prints their paths."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import cnn_jax

    cnn_jax.apply_xla_cpu_defaults()
    f = flags.FLAGS
    for path in write_figures(
        f.workdir, f.output_dir, f.config, f.layers, f.num_eval, f.num_images
    ):
        print(path)


if __name__ == "__main__":
    _define_flags()
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
