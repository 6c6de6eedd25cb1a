"""Where the time of one training step goes on XLA:CPU: ``jax.profiler`` totals per op kind.

Traces a few training steps of one model of ``benchmarks.zoo`` (the ``ours`` program,
or plain flax) with ``jax.profiler``, reads the trace back with
``jax.profiler.ProfileData`` and prints, per kind of compiled op (the fusion names of
the optimized HLO, e.g. ``transpose_copy_fusion``, without their numeric suffix), the
time per step summed over XLA:CPU's worker threads, with the page faults and system time
per step. Kinds that run on two threads at once add up to more than the wall time;
convolutions run by Eigen appear only with the time to start them, so the table shows
what is *not* convolution arithmetic. It also prints the size of the compiled step's
temporaries (XLA's memory analysis) and its YNNPACK fusions counted by op. The optimized
HLO can be written with ``--hlo``.

It finds recomputation that XLA fused into layout transposes (``transpose_copy_fusion``,
the reason for the ``materialize`` fast path) and the page faults of every step's fresh
buffers (``cnn_jax.host_memory``); docs/ENGINEERING.md, "CPU tuning", has the findings.

Run from the repository root::

    python -m benchmarks.studies.profile_step_cpu --model resnet20
    python -m benchmarks.studies.profile_step_cpu --model resnet20 \
        --fast-paths depthwise,grouped,conv_transpose   # without 'materialize'
    python -m benchmarks.studies.profile_step_cpu --model airbench94 --flax --hlo /tmp/airbench.hlo
    python -m benchmarks.studies.profile_step_cpu --model airbench94 --batch 1024 \
        --host-memory calling_thread   # the CIFAR-10 speed run's batch
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import re
import resource
import tempfile
import time
from collections.abc import Sequence

from benchmarks import common, zoo
from benchmarks.zoo.steps import jax_programs


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, profiles the steps and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=zoo.MODELS)
    parser.add_argument("--flax", action="store_true", help="the plain flax.linen model")
    parser.add_argument("--fast-paths", default="auto", help="as in benchmarks.train_step_cpu")
    parser.add_argument("--steps", type=int, default=3, help="traced steps (after 3 warm-up)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the model's)")
    parser.add_argument("--top", type=int, default=20, help="op kinds to print")
    parser.add_argument("--hlo", default=None, help="write the optimized HLO of the step here")
    common.add_host_memory_argument(parser)
    common.add_setup_arguments(parser)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps (={args.steps}) must be positive")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch (={args.batch}) must be positive")
    common.setup_xla(args.xla_defaults, args.xla_flags)
    host_memory = common.apply_host_memory(args.host_memory)
    threads = common.set_threads(args.threads, "unset")
    import jax

    spec = zoo.specs()[args.model]
    if args.batch is not None:
        spec = dataclasses.replace(spec, batch=args.batch)
    module = zoo.jax_models()[args.model][1 if args.flax else 0]
    train, _, _ = jax_programs(module, spec, args.fast_paths, hlo_path=args.hlo)
    for _ in range(3):
        train()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    with tempfile.TemporaryDirectory() as trace_dir:
        t0 = time.perf_counter()
        with jax.profiler.trace(trace_dir):
            for _ in range(args.steps):
                train()
        wall = (time.perf_counter() - t0) / args.steps
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
        profile = jax.profiler.ProfileData.from_file(path)
        kinds: collections.Counter[str] = collections.Counter()
        for plane in profile.planes:
            for line in plane.lines:
                if "XLAEigen" not in line.name:
                    continue
                for event in line.events:
                    if event.name.startswith("ThunkExecutor"):
                        continue
                    kinds[re.sub(r"\.\d+$", "", event.name)] += event.duration_ns
    faults = (usage1.ru_minflt - usage0.ru_minflt) / args.steps
    system = (usage1.ru_stime - usage0.ru_stime) / args.steps
    which = "flax" if args.flax else f"ours (fast paths {args.fast_paths})"
    print(f"### {args.model} ({spec.describe()}), {which}: one training step under jax.profiler\n")
    print(f"- command: `{common.command_line()}`")
    print(f"- XLA_FLAGS: `{os.environ.get('XLA_FLAGS', '')}`")
    print(f"- wall time per traced step: {wall * 1e3:.0f} ms (slower than untraced)")
    print(f"- threads: {threads}; host memory (malloc): {host_memory}")
    print(f"- page faults per step: {faults:,.0f}; system time per step: {system * 1e3:.0f} ms")
    temp = train.temp_bytes()
    if temp is not None:
        print(f"- temporaries of the compiled step (XLA memory analysis): {temp:,} B")
    print(f"- YNNPACK fusions by op: {common.ynn_fusions(train.hlo()) or 'none'}\n")
    print("| op kind | ms per step (all threads) |")
    print("|---|---|")
    for kind, ns in kinds.most_common(args.top):
        print(f"| `{kind}` | {ns / args.steps / 1e6:.1f} |")


if __name__ == "__main__":
    main()
