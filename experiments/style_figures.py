r"""The style-transfer figures: reconstructions per layer, the alpha/beta x depth grid, WCT.

  python -m experiments.style_figures --out=docs/results/figures [--weights=vgg19.pth] \
      [--size=64 --steps=60] [--wct_workdirs=runs/wct_decoder_relu1,...]

Content: a CIFAR-10 test image (``../shared/data``, 32x32 JPEG) upscaled to ``--size``;
style: a procedurally drawn pattern (coloured diagonal waves), since no paintings are
available offline. Weights: ``--weights`` (torchvision's vgg19), else a VGG-19 with
torchvision's initialization at seed 0 (no ImageNet weights here; say so with the
figures). Writes ``style_reconstructions.png`` (Gatys et al.'s figure: content
reconstructed from white noise from relu1_1 ... relu5_1 alone, style from relu1_1,
relu1_1+relu2_1, ..., relu1_1..relu5_1), ``style_grid.png`` (rows: style layers up to
relu{k}_1; columns: alpha/beta 1e-5 ... 1e-2; content relu4_2), and with
``--wct_workdirs`` ``style_wct.png`` and the timings (``style_timings.json``).

``--wct_eval=N`` also measures each decoder's reconstruction loss (``wct_reconstruction``,
the training loss) on the first ``N`` CIFAR-10 test images, for decoder runs stopped
before their full test-set evaluation (a SIGTERM makes ``experiments.main`` checkpoint
and exit); the values go to ``style_timings.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def cifar_image(index: int = 0, cls: str = "cat", size: int = 64) -> np.ndarray:
    """The ``index``-th test image of class ``cls``, upscaled (bicubic) to ``size``."""
    from PIL import Image

    archive = ROOT / ".." / "shared" / "data" / "cifar10_jpeg" / "cifar10_jpeg.tar.gz"
    seen = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and "test" in parts and parts[-2] == cls:
                if seen == index:
                    im = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                    im = im.resize((size, size), Image.BICUBIC)
                    return np.asarray(im, np.float32) / 255.0
                seen += 1
    raise ValueError(f"no test image {index} of class {cls!r} in {archive}")


def wave_pattern(size: int = 64) -> np.ndarray:
    """Coloured diagonal waves with dots: a texture with clear colour and structure."""
    yy, xx = np.mgrid[0:size, 0:size] / size * 2 * np.pi
    a = np.sin(3 * (xx + yy)) * 0.5 + 0.5
    b = np.sin(7 * xx - 2 * yy) * 0.5 + 0.5
    dots = (np.sin(11 * xx) * np.sin(11 * yy) > 0.7).astype(np.float32)
    img = np.stack([0.9 * a + 0.1 * dots, 0.3 + 0.4 * b * a, 0.8 * (1 - a) + 0.2 * dots], -1)
    return np.clip(img, 0, 1).astype(np.float32)


def _grid(images, rows, cols, row_labels, col_labels, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows + 0.4), squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i][j]
            ax.imshow(np.clip(images[i][j], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and col_labels:
                ax.set_title(col_labels[j], fontsize=7)
            if j == 0 and row_labels:
                ax.set_ylabel(row_labels[i], fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def _decoder_test_loss(params, level: int, count: int, batch: int = 50) -> float:
    """Mean ``wct_reconstruction`` loss of a trained autoencoder on the first test images."""
    import jax

    from cnn_jax.data import load_dataset
    from cnn_jax.style import WCTAutoencoder, reconstruction_loss

    images = load_dataset("cifar10", "test")["image"][:count]
    model = WCTAutoencoder(level=level, upscale=2)
    apply = jax.jit(lambda x: reconstruction_loss(model.apply({"params": params}, x)[1]))
    total = 0.0
    for i in range(0, len(images), batch):
        x = np.asarray(images[i : i + batch], np.float32)
        x = x / 255.0 if images.dtype == np.uint8 else x
        total += float(np.sum(apply(x)))
    return total / len(images)


def main() -> None:
    """Draws the figures (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/results/figures")
    p.add_argument("--weights", default=None)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--wct_workdirs", default="", help="comma-separated decoder workdirs")
    p.add_argument("--skip_gatys", action="store_true", help="only the WCT figure")
    p.add_argument("--wct_eval", type=int, default=0, help="test images for the decoder loss")
    args = p.parse_args()
    import cnn_jax

    cnn_jax.apply_xla_cpu_defaults()
    import jax
    import jax.numpy as jnp

    from cnn_jax import style

    os.makedirs(args.out, exist_ok=True)
    if args.weights:
        params = style.load_vgg19(args.weights)
    else:
        model = style.VGGFeatures(layers=("relu5_4",))
        params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    content = cifar_image(size=args.size)
    pattern = wave_pattern(args.size)
    key = jax.random.key(1)
    timings: dict[str, float] = {}

    def run(weights, **kw):
        t = time.perf_counter()
        img, losses = style.stylize(
            params, content, pattern, weights=weights, steps=args.steps, key=key, **kw
        )
        return img, losses, time.perf_counter() - t

    if not args.skip_gatys:
        rec_c, rec_s = [], []
        for k, layer in enumerate(STYLE_LAYERS):
            w = style.StyleWeights(content_layers=(layer,), style_layers=(), beta=0.0)
            rec_c.append(run(w)[0])
            # alpha = 0 with the grid's layers: the grid row's compiled program serves
            w = style.StyleWeights(style_layers=STYLE_LAYERS[: k + 1], alpha=0.0)
            rec_s.append(run(w)[0])
            print(f"reconstructions from {layer} done", flush=True)
        _grid(
            [[content, *rec_c], [pattern, *rec_s]],
            2,
            6,
            ["content", "style"],
            ["input", *(f"..{n}" for n in STYLE_LAYERS)],
            os.path.join(args.out, "style_reconstructions.png"),
            "Reconstructions from white noise (VGG-19, torchvision init; L-BFGS "
            f"{args.steps} it.): content from one layer, style from relu1_1 up to it",
        )
        ratios = (1e-5, 1e-4, 1e-3, 1e-2)
        rows = []
        for k in range(len(STYLE_LAYERS)):
            row = []
            for r in ratios:
                w = style.StyleWeights(style_layers=STYLE_LAYERS[: k + 1], alpha=1.0, beta=1 / r)
                img, _, sec = run(w)
                row.append(img)
            rows.append(row)
            timings[f"gatys_{args.size}px_{args.steps}it_s"] = sec
            print(f"grid row {k} done", flush=True)
        _grid(
            rows,
            len(rows),
            len(ratios),
            [f"style ..{n}" for n in STYLE_LAYERS],
            [f"a/b={r:g}" for r in ratios],
            os.path.join(args.out, "style_grid.png"),
            "Content relu4_2 x style layers x alpha/beta (torchvision-init VGG-19)",
        )
    if args.wct_workdirs:
        from cnn_jax.style import wct as wct_lib
        from cnn_jax.train.checkpoint import Checkpointer

        decoders, encoder = {}, None
        for workdir in args.wct_workdirs.split(","):
            ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
            try:
                tree = ckpt.restore()
            finally:
                ckpt.close()
            with open(os.path.join(workdir, "config.json")) as f:
                record = json.load(f)
            level = int(record["config"]["model_kwargs.level"])  # the flattened record
            decoders[level] = tree["params"]["decoder"]
            encoder = {**(encoder or {}), **tree["params"]["encoder"]}
            if args.wct_eval:
                loss = _decoder_test_loss(tree["params"], level, args.wct_eval)
                timings[f"wct_relu{level}_test_loss_first{args.wct_eval}"] = loss
                timings[f"wct_relu{level}_step"] = int(tree.get("step", -1))
                print(f"relu{level}_1 decoder: test loss {loss:.5f}", flush=True)
        levels = tuple(sorted(decoders, reverse=True))
        outs = {}
        for lv in levels:
            outs[lv] = wct_lib.universal_stylize(encoder, decoders, content, pattern, levels=(lv,))
            outs[-lv] = wct_lib.universal_stylize(
                encoder, decoders, content, content, levels=(lv,)
            )  # content with its own statistics: the decoder's reconstruction
        multi = wct_lib.universal_stylize(encoder, decoders, content, pattern, levels=levels)
        t = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(
                wct_lib.universal_stylize(encoder, decoders, content, pattern, levels=levels)
            )
        timings[f"wct_{args.size}px_levels{''.join(map(str, levels))}_s"] = (
            time.perf_counter() - t
        ) / 3
        _grid(
            [
                [
                    content,
                    pattern,
                    *(outs[-lv] for lv in levels),
                    *(outs[lv] for lv in levels),
                    multi,
                ]
            ],
            1,
            3 + 2 * len(levels),
            None,
            [
                "content",
                "style",
                *(f"recon relu{lv}_1" for lv in levels),
                *(f"WCT relu{lv}_1" for lv in levels),
                f"WCT levels {''.join(map(str, levels))}",
            ],
            os.path.join(args.out, "style_wct.png"),
            "Universal style transfer, decoders trained here (random-init VGG-19 encoder)",
        )
    if timings:
        with open(os.path.join(args.out, "style_timings.json"), "w") as f:
            json.dump(timings, f, indent=1)
        print(json.dumps(timings, indent=1))


if __name__ == "__main__":
    main()
