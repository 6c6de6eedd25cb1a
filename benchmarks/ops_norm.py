"""Training-mode batch normalization of ``cnn_jax.layers.BatchNorm`` against PyTorch CPU.

For every case, ``BatchNorm`` in training mode with the fast path ``batch_norm``
(``cnn_jax.ops.norm_fast.batch_norm_train``: the same values, a custom derivative) is timed
against the same module with the fast paths off (the reference: JAX's derivative of
the plain formula), and against ``torch.nn.functional.batch_norm(training=True)`` on
the same shapes. Forward (``fwd``) and forward plus the gradients with respect to the
input, the scale and the bias (``fwd+bwd``). The shapes are the batch norms of the
models of ``benchmarks.train_step_cpu``.

Run from the repository root::

    python -m benchmarks.ops_norm            # full run, about a minute on 2 cores
    python -m benchmarks.ops_norm --quick    # smoke test
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.common import ACTIVATION, Case

_CHANNELS: common.Convert = (np.asarray, np.asarray)


def batch_norm_case(batch: int, size: int, chans: int, label: str) -> Case:
    """``BatchNorm()(x, train=True)`` with and without the ``batch_norm`` fast path."""
    import jax
    from torch.nn import functional as tnf

    from cnn_jax.layers import BatchNorm
    from cnn_jax.ops import use_fast_paths

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((batch, size, size, chans)) * 2 + 0.5).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, chans).astype(np.float32)
    bias = rng.standard_normal(chans).astype(np.float32)
    model = BatchNorm()
    stats = model.init(jax.random.key(0), x[:1])["batch_stats"]

    def module(fast: bool) -> Any:
        def apply(x: Any, scale: Any, bias: Any) -> Any:
            with use_fast_paths(["batch_norm"] if fast else False):
                y, _ = model.apply(
                    {"params": {"scale": scale, "bias": bias}, "batch_stats": stats},
                    x,
                    train=True,
                    mutable=["batch_stats"],
                )
            return y

        return apply

    def torch_fn(x: Any, scale: Any, bias: Any) -> Any:
        return tnf.batch_norm(x, None, None, scale, bias, training=True)

    return Case(
        name=f"BatchNorm train {size}x{size}x{chans} N{batch} ({label})",
        ours=module(True),
        ref=module(False),
        arrays=[x, scale, bias],
        n_diff=3,
        torch_fn=torch_fn,
        convert=[ACTIVATION, _CHANNELS, _CHANNELS],
        ref_name="fast path off",
    )


def cases(quick: bool) -> list[Case]:
    """The benchmark cases (small shapes with ``quick``)."""
    if quick:
        return [batch_norm_case(4, 8, 16, "smoke test")]
    return [
        batch_norm_case(128, 32, 16, "ResNet-20, first stage"),
        batch_norm_case(128, 8, 64, "ResNet-20, last stage"),
        batch_norm_case(256, 16, 256, "airbench94, second block"),
        batch_norm_case(64, 10, 728, "Xception middle flow"),
        batch_norm_case(32, 64, 32, "U-Net decoder, last level"),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, runs every case and prints the report."""
    common.main_cases(argv, __doc__, "ops_norm", cases, "Batch normalization", "fast path off")


if __name__ == "__main__":
    main()
