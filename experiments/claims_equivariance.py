r"""Equivariance of convolutions: exact under translation, broken by rotation and scaling.

Command (from the repository root, in the venv):
  python -m experiments.claims_equivariance --workdir=runs/claims_equivariance

Writes ``equivariance.png`` and ``equivariance.md`` into ``--workdir``. Inputs: the
first ``--num_images`` MNIST test digits, standardized. Feature maps: random
He-normal 5x5 convolutions (``--channels`` output channels, seed ``--seed``), an
isotropic Gaussian 5x5 kernel (rotation-equivariant up to resampling: the baseline
of the resampling error) and an oriented Gabor kernel. Measured
(``cnn_jax.analysis.equivariance``):

1. translation by 1..4 pixels: the relative error of ``f(T x)`` against ``T f(x)``
   for a 'VALID' convolution (exact: 0 up to float rounding), a 'SAME' one compared
   everywhere (the zero padding breaks it at the border) and away from the border;
   a stride-2 convolution for even and odd shifts;
2. rotation by 0..180 degrees and scaling by 0.6..1.6 about the centre: the error on
   the central disc, for each kernel;
3. invariance with pooling depth: ``||f(T x) - f(x)|| / ||f(x)||`` for shifts of 1..6
   pixels, ``f`` the output after 0..3 blocks of (3x3 convolution, ReLU, 2x2 max
   pooling) with random weights, and after global average pooling of block 3.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags


def _define_flags() -> None:
    """Defines the flags (when run as a script, so that importing defines none)."""
    flags.DEFINE_string("workdir", None, "Where the figure and the table go.")
    flags.DEFINE_integer("num_images", 32, "MNIST test digits used.")
    flags.DEFINE_integer("channels", 8, "Output channels of the random convolutions.")
    flags.DEFINE_integer("seed", 0, "Seed of the random kernels.")
    flags.mark_flags_as_required(["workdir"])


SHIFTS = (1, 2, 3, 4)
ANGLES = tuple(range(0, 181, 15))
SCALES = (0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.6)
INVARIANCE_SHIFTS = (1, 2, 3, 4, 5, 6)


def _images(n: int) -> np.ndarray:
    from cnn_jax import data

    test = data.load_dataset("mnist", "test")
    x = test["image"][:n].astype(np.float32) / 255.0
    return (x - 0.1307) / 0.3081


def measure(x: np.ndarray, channels: int, seed: int) -> dict:
    """Every number of the figure, as nested dicts of floats."""
    import jax
    import jax.numpy as jnp

    from cnn_jax import analysis, ops
    from cnn_jax.layers.initializers import get_initializer
    from cnn_jax.models.fixed_filters import gabor_bank

    key = jax.random.key(seed)
    k_rand = get_initializer("he_normal")(key, (5, 5, 1, channels))
    yy, xx = np.mgrid[-2:3, -2:3]
    gauss = np.exp(-(yy**2 + xx**2) / 2.0)
    k_gauss = jnp.asarray((gauss / gauss.sum())[:, :, None, None], jnp.float32)
    k_gabor = jnp.asarray(gabor_bank(5, 4)[:, :, None, :1])
    kernels = {"random 5x5": k_rand, "Gaussian (isotropic)": k_gauss, "Gabor (oriented)": k_gabor}

    def conv(k, padding="VALID", strides=1):
        return lambda z: ops.conv(z, k, strides=strides, padding=padding)

    out: dict = {"translation": {}, "rotation": {}, "scaling": {}, "invariance": {}}
    tr = out["translation"]
    tr["VALID conv, stride 1"] = [
        analysis.translation_equivariance_error(conv(k_rand), x, (s, s)) for s in SHIFTS
    ]
    tr["SAME conv, whole map"] = [
        analysis.translation_equivariance_error(conv(k_rand, "SAME"), x, (s, s), mode="zeros")
        for s in SHIFTS
    ]
    tr["SAME conv, margin 2"] = [
        analysis.translation_equivariance_error(
            conv(k_rand, "SAME"), x, (s, s), margin=2, mode="zeros"
        )
        for s in SHIFTS
    ]
    # Stride 2: an even shift s moves the output by s / 2 (exact); an odd one has no
    # counterpart on the output grid: the error against the better of the two nearest
    # output shifts, floor(s / 2) and ceil(s / 2), on the interior.
    stride2 = conv(k_rand, "VALID", 2)
    y = np.asarray(stride2(x))
    row = []
    for s in SHIFTS:
        ys = np.asarray(stride2(analysis.translate(x, (s, s))))
        errs = []
        for o in {s // 2, (s + 1) // 2}:
            want = np.roll(y, (o, o), axis=(1, 2))[:, 3:-3, 3:-3]
            errs.append(np.linalg.norm(ys[:, 3:-3, 3:-3] - want) / np.linalg.norm(want))
        row.append(float(min(errs)))
    tr["VALID conv, stride 2 (interior)"] = row
    for name, k in kernels.items():
        out["rotation"][name] = [
            analysis.rotation_equivariance_error(conv(k, "SAME"), x, float(a)) for a in ANGLES
        ]
        out["scaling"][name] = [
            analysis.scale_equivariance_error(conv(k, "SAME"), x, f, radius_fraction=0.55)
            for f in SCALES
        ]
    init = get_initializer("he_normal")
    keys = jax.random.split(key, 3)
    ks = [
        init(keys[0], (3, 3, 1, 16)),
        init(keys[1], (3, 3, 16, 16)),
        init(keys[2], (3, 3, 16, 16)),
    ]

    def blocks(z, depth, gap=False):
        for k in ks[:depth]:
            z = ops.max_pool(jax.nn.relu(ops.conv(z, k, padding="SAME")), 2)
        return jnp.mean(z, axis=(1, 2)) if gap else z

    for depth in range(4):
        out["invariance"][f"{depth} pooling stages"] = [
            analysis.invariance_change(lambda z, d=depth: blocks(z, d), x, (s, s))
            for s in INVARIANCE_SHIFTS
        ]
    out["invariance"]["3 stages + global average pool"] = [
        analysis.invariance_change(lambda z: blocks(z, 3, gap=True), x, (s, s))
        for s in INVARIANCE_SHIFTS
    ]
    return out


def write(out: dict, workdir: str) -> None:
    """Writes ``equivariance.png`` and ``equivariance.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    panels = [
        ("translation", SHIFTS, "shift (pixels, diagonal)", "||f(Tx) - T f(x)|| / ||f(x)||"),
        ("rotation", ANGLES, "rotation (degrees)", "||f(Rx) - R f(x)|| / ||f(x)||"),
        ("scaling", SCALES, "scale factor", "||f(Sx) - S f(x)|| / ||f(x)||"),
        (
            "invariance",
            INVARIANCE_SHIFTS,
            "shift (pixels, diagonal)",
            "||f(Tx) - f(x)|| / ||f(x)||",
        ),
    ]
    for ax, (key, xs, xlabel, ylabel) in zip(axes, panels):
        for name, ys in out[key].items():
            ax.plot(xs, ys, marker="o", ms=3, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(key)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "equivariance.png"), dpi=80)
    plt.close(fig)
    lines = ["# Equivariance of convolutions (MNIST test digits, random kernels)", ""]
    for key, xs in (
        ("translation", SHIFTS),
        ("rotation", ANGLES),
        ("scaling", SCALES),
        ("invariance", INVARIANCE_SHIFTS),
    ):
        lines += [f"## {key}", "", "| | " + " | ".join(str(v) for v in xs) + " |"]
        lines.append("|---" * (len(xs) + 1) + "|")
        for name, ys in out[key].items():
            lines.append(f"| {name} | " + " | ".join(f"{y:.3g}" for y in ys) + " |")
        lines.append("")
    with open(os.path.join(workdir, "equivariance.md"), "w") as fh:
        fh.write("\n".join(lines))


def main(argv: list[str]) -> None:
    """Measures and writes the figure and the table."""
    del argv
    import cnn_jax

    cnn_jax.apply_xla_cpu_defaults()
    f = flags.FLAGS
    os.makedirs(f.workdir, exist_ok=True)
    out = measure(_images(f.num_images), f.channels, f.seed)
    write(out, f.workdir)
    with open(os.path.join(f.workdir, "equivariance.md")) as fh:
        print(fh.read())


if __name__ == "__main__":
    _define_flags()
    app.run(main)
