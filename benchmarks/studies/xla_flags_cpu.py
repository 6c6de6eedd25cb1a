"""XLA:CPU flags, measured: convolution layers and training steps under each setting.

XLA reads its flags once per process, so every setting runs in its own worker
process; the settings take turns within each round (round 1: A, B, C; round 2: A, B,
C; ...), and a ratio is the median over rounds of one setting's time over the
reference's (``cnn_jax``, the library's defaults) in the same round, with the range of
the per-round ratios.

Settings:

* ``cnn_jax``: cnn_jax's XLA:CPU defaults (``cnn_jax.xla_defaults``, applied by the
  benchmark harness);
* ``jaxlib``: jaxlib's own defaults (``CNN_JAX_XLA_DEFAULTS=0``): convolutions handed
  to YNNPACK;
* ``xnnpack-off``: the defaults plus ``--xla_cpu_use_xnnpack=false``;
* ``ynn-off``: ``--xla_cpu_experimental_ynn_fusion_type=`` with no types (nothing to
  YNNPACK, dots included);
* ``ynn-reduce-off``: ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-reduce``
  (reductions stay XLA's too, and can fuse with the elementwise code around them);
* ``ynn-dot-off``: matrix products stay XLA's too (Eigen's)::

      --xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot

Work per worker (``cnn_jax.ops.use_fast_paths(False)``, so that only XLA's own
programs are compared):

* ``layers``: forward, and forward + input and kernel gradients, of single
  ``lax.conv_general_dilated`` layers (ResNet-50 shapes at batch 8, CIFAR shapes at
  batch 64, a 4-group and a dilated convolution);
* ``models``: the training step and inference of the models of ``benchmarks.zoo``,
  ours (with the fast paths the setting would use by default) and the plain
  ``flax.linen`` version; a second table sets ours under cnn_jax's flags against
  plain flax under jaxlib's (what a flax user gains).

Run from the repository root::

    python -m benchmarks.studies.xla_flags_cpu      # about 10 minutes per setting and work
    python -m benchmarks.studies.xla_flags_cpu --work layers --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import common

SETTINGS: dict[str, tuple[dict[str, str], str]] = {
    "cnn_jax": ({}, ""),
    "jaxlib": ({"CNN_JAX_XLA_DEFAULTS": "0"}, ""),
    "xnnpack-off": ({}, "--xla_cpu_use_xnnpack=false"),
    "ynn-off": ({}, "--xla_cpu_experimental_ynn_fusion_type="),
    "ynn-reduce-off": (
        {},
        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-reduce",
    ),
    "ynn-dot-off": (
        {},
        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot",
    ),
}
REFERENCE = "cnn_jax"

#: (name, batch, size, c_in, c_out, kernel, stride, dilation, groups)
LAYERS = [
    ("r50 56 1x1 64-256", 8, 56, 64, 256, 1, 1, 1, 1),
    ("r50 56 3x3 64", 8, 56, 64, 64, 3, 1, 1, 1),
    ("r50 28 3x3 128", 8, 28, 128, 128, 3, 1, 1, 1),
    ("r50 28 1x1/2 256-512", 8, 28, 256, 512, 1, 2, 1, 1),
    ("r50 14 3x3 256", 8, 14, 256, 256, 3, 1, 1, 1),
    ("r50 7 3x3 512", 8, 7, 512, 512, 3, 1, 1, 1),
    ("r50 stem 7x7/2", 8, 224, 3, 64, 7, 2, 1, 1),
    ("cifar 32 3x3 16", 64, 32, 16, 16, 3, 1, 1, 1),
    ("cifar 32 5x5 32", 64, 32, 32, 32, 5, 1, 1, 1),
    ("cifar 32 3x3 32 dil 2", 64, 32, 32, 32, 3, 1, 2, 1),
    ("cifar 32 3x3 64 groups 4", 64, 32, 64, 64, 3, 1, 1, 4),
    ("airbench 15 3x3 64-256", 64, 15, 64, 256, 3, 1, 1, 1),
]


def _median_time(fn: Any, reps: int) -> float:
    return statistics.median(common.sample_times(fn, reps, warmup=2))


def _worker_layers(reps: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    out = {}
    rng = np.random.default_rng(0)
    for name, b, s, ci, co, k, st, d, g in LAYERS:
        x = jnp.asarray(rng.standard_normal((b, s, s, ci)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((k, k, ci // g, co)) * 0.1, jnp.float32)

        def conv(x: Any, w: Any, st: int = st, d: int = d, g: int = g) -> Any:
            return lax.conv_general_dilated(
                x,
                w,
                (st, st),
                "SAME",
                rhs_dilation=(d, d),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=g,
            )

        fwd = jax.jit(conv)
        grad = jax.jit(jax.grad(lambda x, w, c=conv: jnp.sum(c(x, w) ** 2), argnums=(0, 1)))
        for mode, fn in (("fwd", fwd), ("fwd+bwd", grad)):

            def call(fn: Any = fn, x: Any = x, w: Any = w) -> Any:
                return jax.block_until_ready(fn(x, w))

            out[f"{name}: {mode}"] = _median_time(call, reps)
    return out


def _worker_models(models: Sequence[str], reps: int) -> dict[str, float]:
    from benchmarks import zoo
    from benchmarks.zoo.steps import jax_programs

    specs = zoo.specs()
    modules = zoo.jax_models()
    out = {}
    for name in models:
        for who, module in zip(("ours", "flax"), modules[name]):
            train, infer, _ = jax_programs(module, specs[name], "auto")
            out[f"{name}: train, {who}"] = _median_time(train, reps)
            out[f"{name}: infer, {who}"] = _median_time(infer, reps)
    return out


def worker(work: Sequence[str], models: Sequence[str], reps: int) -> None:
    """Times the work under this process's XLA flags; prints one JSON line."""
    import jax

    from cnn_jax.ops import enabled_fast_paths, use_fast_paths

    result: dict[str, Any] = {
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "fast_paths": sorted(enabled_fast_paths()),
        "backend": jax.default_backend(),
        "times": {},
    }
    if "layers" in work:
        with use_fast_paths(False):
            result["times"].update(_worker_layers(reps))
    if "models" in work:
        result["times"].update(_worker_models(models, reps))
    print("RESULT " + json.dumps(result), flush=True)


def _run_worker(setting: str, argv: Sequence[str], threads: int) -> dict[str, Any]:
    env_extra, flags = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CNN_JAX_XLA_DEFAULTS")}
    env.update(env_extra)
    if flags:
        env["XLA_FLAGS"] = flags
    cmd = [sys.executable, "-m", "benchmarks.studies.xla_flags_cpu", "--worker", *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker for {setting!r} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the workers in interleaved rounds and prints the ratio table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", default="layers,models", help="layers and/or models")
    parser.add_argument(
        "--models", default="lenet5,airbench94,resnet20,xception_block,unet_decoder"
    )
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    work = [w for w in args.work.split(",") if w]
    models = [m for m in args.models.split(",") if m]
    if args.worker:
        # The setting's environment (XLA_FLAGS, CNN_JAX_XLA_DEFAULTS) comes from the parent.
        common.setup_xla("on")
        common.set_threads(args.threads)
        worker(work, models, args.reps)
        return
    settings = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown or REFERENCE not in settings:
        raise SystemExit(f"--settings must include {REFERENCE!r} and name only {list(SETTINGS)}")
    if args.rounds < 1 or args.reps < 3:
        raise SystemExit("--rounds must be >= 1 and --reps >= 3")
    wargs = ["--work", args.work, "--models", args.models, "--reps", str(args.reps)]
    wargs += ["--threads", str(args.threads)]
    print("### XLA:CPU flags\n", flush=True)
    lines = [line for line in common.machine_lines() if not line.startswith("- XLA_FLAGS")]
    print("\n".join(lines))
    print(
        f"- {args.threads} threads per worker; {args.rounds} rounds, settings interleaved; "
        f"median of {args.reps} calls each",
        flush=True,
    )
    results: dict[str, list[dict[str, float]]] = {s: [] for s in settings}
    described: dict[str, str] = {}
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for s in settings:
            res = _run_worker(s, wargs, args.threads)
            results[s].append(res["times"])
            described[s] = (
                f"`{res['xla_flags'] or '(none)'}`; fast paths: "
                f"{', '.join(res['fast_paths']) or 'none'}"
            )
            print(f"  round {r + 1}: {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    for s in settings:
        print(f"- {s}: XLA_FLAGS {described[s]}")
    print("\n".join(common.end_lines(t0)) + "\n")
    keys = list(results[REFERENCE][0])
    others = [s for s in settings if s != REFERENCE]
    headers = ["case", f"{REFERENCE} ms", *(f"{s}/{REFERENCE}" for s in others)]
    rows = []
    for key in keys:
        ref = [rd[key] for rd in results[REFERENCE]]
        row = [key, f"{statistics.median(ref) * 1e3:.1f}"]
        for s in others:
            per_round = [rd[key] / rf for rd, rf in zip((x for x in results[s]), ref)]
            lo, hi = min(per_round), max(per_round)
            row.append(f"{statistics.median(per_round):.2f} ({lo:.2f}-{hi:.2f})")
        rows.append(row)
    print(common.markdown_table(headers, rows))
    if "models" in work and "jaxlib" in settings:
        # What a flax.linen user gains: our model under our defaults against the same
        # architecture in plain flax under jaxlib's defaults, round by round.
        print(f"\n{REFERENCE} (ours, cnn_jax's flags) vs plain flax.linen under jaxlib's flags\n")
        rows = []
        for key in keys:
            if not key.endswith(", ours"):
                continue
            flax_key = key[: -len("ours")] + "flax"
            ours = [rd[key] for rd in results[REFERENCE]]
            flax = [rd[flax_key] for rd in results["jaxlib"]]
            per_round = [a / b for a, b in zip(ours, flax)]
            rows.append(
                [
                    key[: -len(", ours")],
                    f"{statistics.median(ours) * 1e3:.1f}",
                    f"{statistics.median(flax) * 1e3:.1f}",
                    f"{statistics.median(per_round):.2f} "
                    f"({min(per_round):.2f}-{max(per_round):.2f})",
                ]
            )
        print(
            common.markdown_table(
                ["case", "ours ms (cnn_jax)", "flax ms (jaxlib)", "ours/flax"], rows
            )
        )


if __name__ == "__main__":
    main()
