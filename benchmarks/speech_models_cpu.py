"""TDNN vs the 2-D spectrogram CNN on CPU: one training step each, timed interleaved.

The two models of ``experiments/configs/tdnn_fsdd.py`` and
``experiments/configs/spectrogram_cnn_fsdd.py`` (1 s of 8 kHz audio in, log-mel front
end inside the model), each trained by the loop's own ``train_step`` (forward,
backward, Adam update) on a batch of 32 random waveforms, and each model's
evaluation forward pass on the same batch; the four programs are timed in interleaved
rounds (``benchmarks.common``), so load from other processes hits them alike. The
ratio is the spectrogram CNN's time over the TDNN's. Command:
  python -m benchmarks.speech_models_cpu            (5 rounds x 5 reps)
  python -m benchmarks.speech_models_cpu --quick    (3 rounds x 5 reps)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import common
from benchmarks.harness.report import end_lines, markdown_table
from benchmarks.harness.timing import format_ms, format_ratio, measure, ratio


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the comparison and prints the markdown report."""
    ns = common.parse_args(__doc__.splitlines()[0], argv, order="block")
    common.set_threads(ns.threads)
    import jax

    from cnn_jax.train import build, steps
    from experiments.configs import spectrogram_cnn_fsdd, tdnn_fsdd

    rounds, reps = ns.rounds, ns.reps
    batch = {
        "image": np.random.default_rng(0).uniform(-0.5, 0.5, (32, 8000, 1)).astype(np.float32),
        "label": np.arange(32, dtype=np.int32) % 10,
    }
    programs, params = {}, {}
    for name, module in (("TDNN", tdnn_fsdd), ("spectrogram CNN", spectrogram_cnn_fsdd)):
        c = module.get_config()
        state, schedule = build.build_state(c, 10, (8000, 1), 78, 936, jax.random.key(0))
        params[name] = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
        step = jax.jit(lambda s, b, schedule=schedule: steps.train_step(
            s, b, base_key=jax.random.key(1), schedule=schedule)[0])  # fmt: skip
        fwd = jax.jit(lambda s, x: s.apply_fn(s.variables(), x, train=False)[0])
        holder = {"state": step(state, batch)}
        jax.block_until_ready(fwd(holder["state"], batch["image"]))

        def train(step=step, holder=holder):
            holder["state"] = jax.block_until_ready(step(holder["state"], batch))

        def infer(fwd=fwd, holder=holder):
            jax.block_until_ready(fwd(holder["state"], batch["image"]))

        programs[f"{name} train step"] = train
        programs[f"{name} forward"] = infer
    t0 = time.perf_counter()
    times = measure(programs, rounds, reps, order=ns.order)
    rows = []
    for kind in ("train step", "forward"):
        ref = times[f"TDNN {kind}"]
        for name in ("TDNN", "spectrogram CNN"):
            t = times[f"{name} {kind}"]
            rows.append([f"{name} {kind}", f"{params[name]:,}", format_ms(t.median),
                         format_ratio(ratio(t, ref))])  # fmt: skip
    print("# TDNN vs spectrogram CNN, batch 32 of 1 s at 8 kHz\n")
    print("\n".join(common.machine_lines(ns.threads)))
    print(f"- settings: {rounds} interleaved rounds x {reps} reps (--order {ns.order})\n")
    print(markdown_table(["program", "parameters", "ms (median)", "ratio to TDNN"], rows))
    print("\n" + "\n".join(end_lines(t0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
