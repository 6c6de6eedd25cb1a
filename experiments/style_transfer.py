r"""Neural style transfer (Gatys, Ecker & Bethge) from the command line.

  python -m experiments.style_transfer --content=A.jpg --style=B.jpg --output=C.png \
      --weights=vgg19-dcbb9e9d.pth [--steps=300 --size=512 --save_every=50]

``--weights`` is torchvision's ``vgg19`` state dict (``.pth``/``.safetensors``; only
the convolutions are read). Its preprocessing is torchvision's (``--preprocessing=caffe``
for the original Caffe VGG-19 converted to PyTorch). The content image is resized so
that its longer side is ``--size``; the style image by the same factor unless
``--style_size`` is given. With ``--scales=256,512`` the transfer runs coarse to fine;
with ``--preserve_colour`` only the luminance is transferred. ``--save_every=N`` writes
``<output stem>_step<k>.png`` every N steps. Exit status 2 with a one-line message for
an unreadable image, a wrong weight file or an image too small for the layers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np


def _layers(text: str) -> tuple[str, ...]:
    return tuple(s for s in text.split(",") if s)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--content", required=True, help="content image (JPEG, PNG, ...)")
    p.add_argument("--style", required=True, help="style image")
    p.add_argument("--output", required=True, help="output image (.png, .jpg)")
    p.add_argument("--weights", required=True, help="torchvision vgg19 .pth/.safetensors")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (per scale)")
    p.add_argument("--size", type=int, default=512, help="longer side of the output")
    p.add_argument("--style_size", type=int, default=None, help="longer side of the style")
    p.add_argument("--scales", type=_ints, default=None, help="coarse-to-fine sizes, e.g. 256,512")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--learning_rate", type=float, default=0.02, help="Adam's, on [0, 1] pixels")
    p.add_argument("--init", choices=("noise", "content"), default="noise")
    p.add_argument("--alpha", type=float, default=1.0, help="content weight")
    p.add_argument("--beta", type=float, default=1e3, help="style weight (alpha/beta 1e-3)")
    p.add_argument("--tv_weight", type=float, default=0.0)
    p.add_argument("--content_layers", type=_layers, default=("relu4_2",))
    p.add_argument(
        "--style_layers",
        type=_layers,
        default=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    )
    p.add_argument("--pooling", choices=("avg", "max"), default="avg")
    p.add_argument("--preprocessing", choices=("torchvision", "caffe"), default="torchvision")
    p.add_argument("--preserve_colour", action="store_true", help="luminance-only transfer")
    p.add_argument("--save_every", type=int, default=0, help="intermediate images every N steps")
    p.add_argument("--seed", type=int, default=0, help="the white noise's seed")
    p.add_argument("--progress", choices=("on", "off"), default="on", help="progress bar")
    return p


def run(args: argparse.Namespace) -> np.ndarray:
    """Runs the transfer of parsed ``args`` and writes ``args.output``.

    Raises:
      ValueError, FileNotFoundError: for bad images, weights or settings.
    """
    import jax

    from cnn_jax import style

    for name in ("steps", "size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} (={getattr(args, name)}) must be positive")
    weights = style.StyleWeights(
        content_layers=args.content_layers,
        style_layers=args.style_layers,
        alpha=args.alpha,
        beta=args.beta,
        tv_weight=args.tv_weight,
    )
    content = style.load_image(args.content)
    style_img = style.load_image(args.style)
    final = max(args.scales) if args.scales else args.size
    scale = final / max(content.shape[:2])
    content = style.load_image(args.content, final)
    style_side = args.style_size or max(1, round(max(style_img.shape[:2]) * scale))
    style_img = style.load_image(args.style, style_side)
    need = style.min_image_size(weights.layers)
    for name, img in (("content", content), ("style", style_img)):
        if min(img.shape[:2]) < need:
            raise ValueError(
                f"the {name} image ({args.content if name == 'content' else args.style}) is "
                f"{img.shape[0]}x{img.shape[1]} after resizing, too small for the layers "
                f"{weights.layers}: each side must be at least {need} (raise --size)"
            )
    params = style.load_vgg19(args.weights)
    if args.preserve_colour:
        original = content
        style_img = np.asarray(style.match_luminance(style_img, content))
        content = np.asarray(style.luminance(content))
    stem, _ = os.path.splitext(args.output)
    bar = None
    if args.progress == "on":
        from tqdm import tqdm

        bar = tqdm(total=args.steps * (len(args.scales) if args.scales else 1), unit="step")
    done = [0]

    def callback(step: int, image: np.ndarray, info: dict[str, float]) -> None:
        if step <= done[0]:  # the next scale of a coarse-to-fine run
            done[0] = 0
        if bar is not None:
            bar.update(step - done[0])
            bar.set_postfix(loss=f"{info['loss']:.4g}")
        done[0] = step
        if args.save_every and step % args.save_every == 0:
            out = style.preserve_colour(image, original) if args.preserve_colour else image
            style.save_image(f"{stem}_step{step}.png", out)

    common = dict(
        weights=weights,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        key=jax.random.key(args.seed),
        pooling=args.pooling,
        preprocessing=args.preprocessing,
        init=args.init,
        callback=callback,
        callback_every=args.save_every or min(args.steps, 10),
    )
    if args.scales:
        image = style.stylize_multiscale(
            params, content, style_img, sizes=args.scales, steps=args.steps, **common
        )
    else:
        image, _ = style.stylize(params, content, style_img, steps=args.steps, **common)
    if bar is not None:
        bar.close()
    if args.preserve_colour:
        image = style.preserve_colour(image, original)
    style.save_image(args.output, image)
    return image


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: parses ``argv``, sets the XLA:CPU defaults, runs; exit 2 on bad input."""
    args = parser().parse_args(argv)
    import cnn_jax

    cnn_jax.apply_xla_cpu_defaults()
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
