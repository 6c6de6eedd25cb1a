r"""airbench94 side by side: JAX (cnn_jax) against the PyTorch reference, same data, same job.

Run from the repository root::

    python -m benchmarks.airbench.run --framework=both --seeds=10 \
        --data_dir=<folder holding cifar10_jpeg.tar.gz> --out=airbench.json

What it does:

1. Loads CIFAR-10 once (:mod:`benchmarks.airbench.data`; ``--synthetic`` for random data
   in smoke tests) and hands the same uint8 arrays to every contestant.
2. Starts every contestant (PyTorch ``eager`` and/or ``compile``; one JAX contestant per
   combination of ``--jax_dtype``/``--jax_pool``/``--jax_bn``/``--jax_loop``), each in
   its own process by default (``spawn``; ``--same_process`` to keep them all in this
   one): separate processes keep the two frameworks' CUDA libraries and memory pools
   apart. JAX runs with ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless set otherwise.
   ``--host_memory=calling_thread`` makes every contestant's process reuse freed host
   memory (``cnn_jax.host_memory``), JAX and PyTorch alike.
3. Set-up, reported and never timed: JAX compiles all its programs ahead of time
   (``jit(...).lower(...).compile()``, the compile time is printed); then every contestant
   does one warm-up run on random labels (the script's ``main('warmup')``: cuDNN
   autotuning for PyTorch, first-execution costs for both). ``--no_warmup`` skips it.
4. Runs the seeds interleaved: seed 0 of every contestant, then seed 1, ... The time of
   a run is the recipe's: whitening init + every epoch's training + the TTA evaluation,
   each closed by a synchronization (``jax.block_until_ready``,
   ``torch.cuda.synchronize``); compile, warm-up, data transfer and the optional
   per-epoch evaluation (``--epoch_eval``) are outside it.
5. Prints every run and a summary (mean/std of the TTA accuracy, mean/median time, and
   the time ratio of each contestant to the first PyTorch one: ratio of the mean
   times and the median/min/max of the per-seed ratios), and writes all of it as JSON
   to ``--out``. With ``--target=0.90`` it also says, per contestant, how many seeds
   reached that test accuracy and whether the mean did (airbench's criterion: the
   recipe's mean time is then its time to the target).

A smoke test on CPU (tiny network, random data, a minute or two)::

    python -m benchmarks.airbench.run --synthetic=2048,500 --seeds=1 --batch_size=256 \
        --epochs=2 --widths=16,32,32 --whiten_samples=500 --eval_batch_size=250
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.airbench import Recipe
from benchmarks.airbench.contestants import Local, Remote, Splits

# ------------------------------------------------------------------------------- driver


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--framework", choices=("jax", "torch", "both"), default="both")
    p.add_argument("--seeds", type=int, default=10, help="runs per contestant")
    p.add_argument("--seed_offset", type=int, default=0)
    p.add_argument(
        "--data_dir",
        default=None,
        help="folder holding cifar10_jpeg.tar.gz (or cifar10_jpeg/cifar10_jpeg.tar.gz), or "
        "the tarball; default: cnn_jax's data directory (CNN_JAX_DATA_DIR or ../shared/data)",
    )
    p.add_argument("--synthetic", default=None, help="N_TRAIN,N_TEST random images instead")
    p.add_argument("--train_subset", type=int, default=None, help="use the first N train images")
    p.add_argument("--test_subset", type=int, default=None, help="use the first N test images")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument(
        "--target",
        type=float,
        default=None,
        help="test accuracy (a fraction, e.g. 0.90) the recipe is meant to reach: the summary "
        "says how many seeds reached it and whether the mean did",
    )
    # recipe overrides (defaults: airbench94's)
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--widths", default=None, help="e.g. 64,256,256")
    p.add_argument("--whiten_samples", type=int, default=None)
    p.add_argument("--eval_batch_size", type=int, default=None)
    p.add_argument("--tta_level", type=int, default=None)
    # contestants
    p.add_argument("--torch_mode", default="eager", help="eager, compile or eager,compile")
    p.add_argument("--torch_dtype", default="auto", help="auto: float16 on CUDA, else float32")
    p.add_argument("--torch_device", default="auto")
    p.add_argument("--jax_dtype", default="auto", help="auto: float16 on GPU, else float32")
    p.add_argument("--jax_pool", default="reshape", help="reshape, lax, cnn_jax (comma list)")
    p.add_argument("--jax_bn", default="cnn_jax", help="cnn_jax, onepass (comma list)")
    p.add_argument("--jax_loop", default="step", help="step, scan (comma list)")
    p.add_argument("--same_process", action="store_true", help="no child processes")
    p.add_argument("--no_warmup", action="store_true")
    p.add_argument("--epoch_eval", action="store_true", help="untimed per-epoch evaluation")
    p.add_argument("--verbose", action="store_true", help="print every epoch")
    common.add_host_memory_argument(p, "in every contestant's process")
    common.add_setup_arguments(p, threads=False)
    return p.parse_args(argv)


def make_recipe(args: argparse.Namespace) -> Recipe:
    """The recipe with the command line's overrides."""
    over: dict[str, Any] = {}
    if args.epochs is not None:
        over["train_epochs"] = args.epochs
    if args.batch_size is not None:
        over["batch_size"] = args.batch_size
    if args.widths is not None:
        over["widths"] = tuple(int(w) for w in _csv(args.widths))
    for name in ("whiten_samples", "eval_batch_size", "tta_level"):
        if getattr(args, name) is not None:
            over[name] = getattr(args, name)
    return dataclasses.replace(Recipe(), **over)


def make_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The contestants: PyTorch first (the reference), then the JAX variants."""
    warmup = not args.no_warmup
    specs: list[dict[str, Any]] = []
    if args.framework in ("torch", "both"):
        for mode in _csv(args.torch_mode):
            if mode not in ("eager", "compile"):
                raise ValueError(f"`--torch_mode` (={args.torch_mode!r}): unknown mode {mode!r}")
            specs.append(
                {
                    "kind": "torch",
                    "mode": mode,
                    "dtype": args.torch_dtype,
                    "device": args.torch_device,
                    "warmup": warmup,
                    "host_memory": args.host_memory,
                }
            )
    if args.framework in ("jax", "both"):
        for dtype, pool, bn, loop in itertools.product(
            _csv(args.jax_dtype), _csv(args.jax_pool), _csv(args.jax_bn), _csv(args.jax_loop)
        ):
            options = {"dtype": dtype, "pool": pool, "bn": bn, "loop": loop}
            specs.append(
                {
                    "kind": "jax",
                    "options": options,
                    "warmup": warmup,
                    "host_memory": args.host_memory,
                }
            )
    return specs


def load_data(args: argparse.Namespace) -> Splits:
    """CIFAR-10 (or synthetic data), optionally cut to subsets."""
    from benchmarks.airbench import data

    if args.synthetic:
        n_train, n_test = (int(v) for v in _csv(args.synthetic))
        splits = data.synthetic_cifar10(n_train, n_test)
    else:
        splits = data.load_cifar10(args.data_dir)
    if args.train_subset:
        x, y = splits["train"]
        splits["train"] = (x[: args.train_subset], y[: args.train_subset])
    if args.test_subset:
        x, y = splits["test"]
        splits["test"] = (x[: args.test_subset], y[: args.test_subset])
    return splits


def _check_target(target: float | None, name: str) -> None:
    """Raises a ValueError naming ``name`` unless ``target`` is None or in (0, 1]."""
    if target is not None and not 0.0 < target <= 1.0:
        raise ValueError(f"`{name}` (={target!r}) must be a fraction in (0, 1], e.g. 0.90")


def summarize(runs: list[dict[str, Any]], target: float | None = None) -> dict[str, Any]:
    """Mean/std accuracy and time statistics of one contestant's runs.

    Args:
      runs: the contestant's runs, each with ``accuracy`` and ``time_s``.
      target: a test accuracy in (0, 1]. When given, the summary also holds ``target``,
        ``seeds_at_target`` (runs whose accuracy reached it) and ``mean_at_target``
        (whether the mean accuracy did: airbench's criterion, under which the mean time
        is the recipe's time to the target).

    Raises:
      ValueError: for no runs, or a ``target`` outside (0, 1].
    """
    if not runs:
        raise ValueError("`runs` is empty: nothing to summarize")
    _check_target(target, "target")
    accs = [r["accuracy"] for r in runs]
    times = [r["time_s"] for r in runs]
    extra: dict[str, Any] = {}
    if target is not None:
        extra = {
            "target": target,
            "seeds_at_target": sum(a >= target for a in accs),
            "mean_at_target": statistics.fmean(accs) >= target,
        }
    return {
        "n": len(runs),
        "acc_mean": statistics.fmean(accs),
        "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "acc_min": min(accs),
        "acc_max": max(accs),
        "time_mean_s": statistics.fmean(times),
        "time_median_s": statistics.median(times),
        "time_min_s": min(times),
        "time_std_s": statistics.stdev(times) if len(times) > 1 else 0.0,
        **extra,
    }


def target_line(s: dict[str, Any]) -> str:
    """One contestant's verdict on the target, from :func:`summarize` with a target."""
    seeds = f"{s['seeds_at_target']}/{s['n']} seeds reached it"
    if s["mean_at_target"]:
        return f"{seeds}; the mean did: time to target {s['time_mean_s']:.1f}s (mean)"
    return f"{seeds}; the mean ({100 * s['acc_mean']:.2f}%) did not: no time to target"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark; returns (and optionally writes) the results."""
    args = parse_args(argv)
    _check_target(args.target, "--target")
    # XLA flags before JAX starts here or in the contestants' processes (they inherit them).
    common.setup_xla(args.xla_defaults, args.xla_flags)
    recipe = make_recipe(args)
    specs = make_specs(args)
    if not specs:
        raise ValueError("no contestants")
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    splits = load_data(args)
    load_s = time.perf_counter() - t0
    n_train, n_test = len(splits["train"][0]), len(splits["test"][0])
    print(
        f"data: {n_train} train / {n_test} test images "
        f"({'synthetic' if args.synthetic else args.data_dir or 'default data dir'}), "
        f"loaded in {load_s:.1f}s; {recipe.total_steps(n_train)} steps of batch "
        f"{recipe.batch_size}",
        flush=True,
    )

    contestants: list[Any] = []
    try:
        for spec in specs:
            t0 = time.perf_counter()
            c = (Local if args.same_process else Remote)(spec, splits, recipe)
            c.info["setup_wall_s"] = time.perf_counter() - t0
            contestants.append(c)
            info = c.info
            extra = f", compile {info['compile_s']:.1f}s" if info.get("compile_s") else ""
            warm = f", warm-up run {info['warmup_wall_s']:.1f}s" if "warmup_wall_s" in info else ""
            memory = f", host memory {info['host_memory']}"
            print(f"ready: {info['label']} on {info['device']}{extra}{warm}{memory}", flush=True)

        labels = [c.info["label"] for c in contestants]
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
        width = max(len(label) for label in labels)
        print(
            f"\n{'seed':>4}  {'contestant':<{width}}  {'tta_acc':>8}  {'time_s':>8}  "
            "whiten / train / eval (s)"
        )
        for seed in range(args.seed_offset, args.seed_offset + args.seeds):
            for label, c in zip(labels, contestants, strict=True):
                r = c.run(seed, args.epoch_eval, args.verbose)
                r["seed"] = seed
                runs[label].append(r)
                for line in r.pop("log", []):
                    print(line)
                print(
                    f"{seed:>4}  {label:<{width}}  {r['accuracy']:>8.4f}  {r['time_s']:>8.3f}  "
                    f"{r['whiten_time_s']:.3f} / {sum(r['epoch_times_s']):.3f} / "
                    f"{r['eval_time_s']:.3f}",
                    flush=True,
                )
    finally:
        for c in contestants:
            c.close()

    summary = {label: summarize(rs, args.target) for label, rs in runs.items()}
    ref = next((label for label in labels if label.startswith("torch")), None)
    print(
        f"\n{'contestant':<{width}}  {'n':>3}  {'acc mean':>8}  {'acc std':>7}  "
        f"{'time mean':>9}  {'median':>7}  {'compile':>7}  ratio vs {ref or '-'}"
    )
    for label, c in zip(labels, contestants, strict=True):
        s = summary[label]
        ratio = ""
        if ref is not None:
            per_seed = [
                a["time_s"] / b["time_s"] for a, b in zip(runs[label], runs[ref], strict=True)
            ]
            s["ratio_of_means"] = s["time_mean_s"] / summary[ref]["time_mean_s"]
            s["ratio_per_seed_median"] = statistics.median(per_seed)
            s["ratio_per_seed_min"] = min(per_seed)
            s["ratio_per_seed_max"] = max(per_seed)
            ratio = (
                f"{s['ratio_of_means']:.3f}x (per seed median {s['ratio_per_seed_median']:.3f}, "
                f"{s['ratio_per_seed_min']:.3f}-{s['ratio_per_seed_max']:.3f})"
            )
        compile_s = c.info.get("compile_s")
        compile_txt = f"{compile_s:7.1f}" if compile_s else "      -"
        print(
            f"{label:<{width}}  {s['n']:>3}  {100 * s['acc_mean']:>7.2f}%  "
            f"{100 * s['acc_std']:>6.2f}%  {s['time_mean_s']:>8.3f}s  "
            f"{s['time_median_s']:>6.3f}s  {compile_txt}  {ratio}"
        )
    if args.target is not None:
        print(f"\ntarget {100 * args.target:.2f}% test accuracy (with TTA):")
        for label in labels:
            print(f"  {label:<{width}}  {target_line(summary[label])}")

    cmd_args = list(sys.argv[1:] if argv is None else argv)
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.airbench.run", *cmd_args]),
        "date_utc": started.strftime("%Y-%m-%d %H:%M:%S"),
        "host": {"python": platform.python_version(), "platform": platform.platform()},
        "data": {
            "source": "synthetic" if args.synthetic else (args.data_dir or "default"),
            "num_train": n_train,
            "num_test": n_test,
            "load_s": load_s,
        },
        "recipe": dataclasses.asdict(recipe),
        "reference": ref,
        "contestants": {c.info["label"]: c.info for c in contestants},
        "summary": summary,
        "runs": runs,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=_json_default)
        print(f"\nwrote {args.out}")
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


if __name__ == "__main__":
    main()
