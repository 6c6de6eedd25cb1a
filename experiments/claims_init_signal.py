r"""Signal propagation at initialization in a 20-layer plain network, by init scheme.

Command (from the repository root, in the venv):
  python -m experiments.claims_init_signal --workdir=runs/claims_init_signal

Writes ``init_signal.png`` and ``init_signal.md`` into ``--workdir``. Model:
``cnn_jax.models.PlainInit`` at depth 20 (Plain20 of He et al. 2015: 19 3x3
convolutions and a linear classifier, ReLU) **without batch normalization**, its
convolution kernels drawn from each scheme: zeros, normal with standard deviation
0.01, 0.05 and 0.1 ("small random"), Glorot-normal and He-normal (truncated normals of
variance ``2 / (fan_in + fan_out)`` and ``2 / fan_in``); and, for reference, He-normal
with batch normalization (training-mode batch statistics). One batch of
``--batch_size`` CIFAR-10 test images (standardized per channel) and their labels; for
every layer in depth order (``cnn_jax.analysis.layer_signals``): the standard
deviation of its output and of the cross-entropy's gradient with respect to that
output.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags


def _define_flags() -> None:
    """Defines the flags (when run as a script, so that importing defines none)."""
    flags.DEFINE_string("workdir", None, "Where the figure and the table go.")
    flags.DEFINE_integer("batch_size", 64, "CIFAR-10 test images in the batch.")
    flags.DEFINE_integer("seed", 0, "Seed of the initialization.")
    flags.mark_flags_as_required(["workdir"])


#: (label, PlainInit keyword arguments).
SCHEMES = (
    ("zeros", {"kernel_init": "zeros"}),
    ("normal, std 0.01", {"kernel_init": "small_random", "init_stddev": 0.01}),
    ("normal, std 0.05", {"kernel_init": "small_random", "init_stddev": 0.05}),
    ("normal, std 0.1", {"kernel_init": "small_random", "init_stddev": 0.1}),
    ("Glorot-normal", {"kernel_init": "glorot_normal"}),
    ("He-normal", {"kernel_init": "he_normal"}),
    ("He-normal + batch norm", {"kernel_init": "he_normal", "batch_norm": True}),
)


def _batch(n: int) -> tuple[np.ndarray, np.ndarray]:
    from cnn_jax import data

    test = data.load_dataset("cifar10", "test")
    x = test["image"][:n].astype(np.float32) / 255.0
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    return x, test["label"][:n].astype(np.int32)


def measure(x: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, list]:
    """Per scheme, the ``LayerSignal`` list of every layer."""
    import jax

    from cnn_jax.analysis import layer_signals
    from cnn_jax.models import PlainInit

    out = {}
    for label, kwargs in SCHEMES:
        model = PlainInit(depth=20, **kwargs)
        variables = model.init(jax.random.key(seed), x[:1])
        out[label] = layer_signals(
            model, variables, x, labels, train=bool(kwargs.get("batch_norm"))
        )
    return out


def write(out: dict[str, list], workdir: str) -> None:
    """Writes ``init_signal.png`` and ``init_signal.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    tiny = 1e-30  # zeros drawn at the bottom of the log axis
    for label, signals in out.items():
        depth = [s.depth for s in signals]
        axes[0].semilogy(
            depth, [max(s.activation_std, tiny) for s in signals], marker="o", ms=3, label=label
        )
        axes[1].semilogy(
            depth, [max(s.grad_std, tiny) for s in signals], marker="o", ms=3, label=label
        )
    axes[0].set_title("activation std by layer (forward)")
    axes[1].set_title("gradient std w.r.t. layer output (backward)")
    for ax in axes:
        ax.set_xlabel("layer (1 = first conv, 20 = classifier)")
        ax.set_ylim(1e-22, 1e3)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(
        "Plain-20 without batch norm at initialization, one CIFAR-10 batch "
        "(zeros: 0, drawn at the bottom)"
    )
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "init_signal.png"), dpi=80)
    plt.close(fig)
    picks = (1, 5, 10, 15, 19, 20)
    head = " | ".join(f"layer {d}" for d in picks)
    lines = ["# Signal propagation at initialization, Plain-20 without batch norm", ""]
    for what in ("activation_std", "grad_std"):
        lines += [f"## {what}", "", f"| scheme | {head} |", "|---" * (len(picks) + 1) + "|"]
        for label, signals in out.items():
            vals = [getattr(signals[d - 1], what) for d in picks]
            lines.append(f"| {label} | " + " | ".join(f"{v:.2e}" for v in vals) + " |")
        lines.append("")
    with open(os.path.join(workdir, "init_signal.md"), "w") as fh:
        fh.write("\n".join(lines))


def main(argv: list[str]) -> None:
    """Measures and writes the figure and the table."""
    del argv
    import cnn_jax

    cnn_jax.apply_xla_cpu_defaults()
    f = flags.FLAGS
    os.makedirs(f.workdir, exist_ok=True)
    x, labels = _batch(f.batch_size)
    write(measure(x, labels, f.seed), f.workdir)
    with open(os.path.join(f.workdir, "init_signal.md")) as fh:
        print(fh.read())


if __name__ == "__main__":
    _define_flags()
    app.run(main)
