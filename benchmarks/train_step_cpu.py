"""Training-step and inference time of small CNNs on the CPU: cnn_jax vs flax.linen vs PyTorch.

For each model of ``benchmarks.zoo``, four programs compute the same architecture (each
with its own framework's initialization):

* ``ours``: the model written with ``cnn_jax.layers`` / ``cnn_jax.ops`` (``Conv``,
  ``BatchNorm``, ``DepthwiseSeparableConv``, ``ConvTranspose``, ``ops.max_pool``), traced
  with cnn_jax's fast paths on (the CPU default);
* ``ours (lax)``: the same, traced inside ``cnn_jax.ops.use_fast_paths(False)``: plain
  ``lax`` convolutions and JAX's own derivatives;
* ``flax``: the same architecture written with plain ``flax.linen``;
* ``torch``: the same architecture in PyTorch CPU (eager), in the faster of the
  contiguous and ``channels_last`` memory formats (measured before timing, per model
  and mode), ``torch.set_num_threads(threads)``;
* with ``--versus NAMES``, also ``ours (versus)``: ``ours`` traced with other fast
  paths, to measure one lever against the rest in the same run.

``train`` times one training step, ``infer`` the forward pass in evaluation mode
(``benchmarks.zoo.steps``). All candidates of one model and mode are timed in
interleaved rounds (``benchmarks.common.measure``); within a round each candidate runs
one untimed step and then its ``reps`` timed steps (``--order block``, the steady state
of a training loop; ``--order sample`` alternates the candidates step by step, which
makes each JAX step find the malloc heap as the previous, different program left it).
A ratio is the median of all samples of one over the other's, with the range of the
per-round ratios.

Run from the repository root::

    python -m benchmarks.train_step_cpu              # every model, a few minutes
    python -m benchmarks.train_step_cpu --quick      # smaller batches (smoke test)
    python -m benchmarks.train_step_cpu --only resnet20 --xla-flags=--xla_cpu_use_xnnpack=true
    python -m benchmarks.train_step_cpu --xla-defaults=off   # without cnn_jax's XLA flags
    python -m benchmarks.train_step_cpu --versus auto --fast-paths none  # the fast paths' gain
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import common, zoo
from benchmarks.common import ynn_fusions
from benchmarks.zoo import MODELS, Spec
from benchmarks.zoo.steps import grad_agreement, jax_programs, torch_programs

__all__ = ["MODELS", "main", "run_model", "ynn_fusions"]

CANDIDATES = ("ours", "ours (lax)", "flax", "torch")


def run_model(
    name: str,
    spec: Spec,
    modules: tuple[Any, Any],
    settings: common.Settings,
    threads: int,
    fast_paths: Any = "auto",
    versus: Any = None,
) -> list[dict[str, str]]:
    """Compiles and times every candidate of one model, in both modes.

    With ``versus`` (a fast-path setting), ``ours`` is also timed with that setting, as
    the candidate ``ours (versus)``: one lever measured against the rest in one run.
    """
    ours_mod, flax_mod = modules
    t0 = time.perf_counter()
    ours_train, ours_infer, ours_loss = jax_programs(ours_mod, spec, fast=fast_paths)
    lax_train, lax_infer, _ = jax_programs(ours_mod, spec, fast=False)
    flax_train, flax_infer, flax_loss = jax_programs(flax_mod, spec, fast=False)
    alt = None if versus is None else jax_programs(ours_mod, spec, fast=versus)
    agree = grad_agreement(ours_mod, spec, fast_paths)
    torch_progs, torch_loss = torch_programs(name, spec, threads)
    print(
        f"  {name}: compiled in {time.perf_counter() - t0:.1f} s; gradient fast vs lax: max rel "
        f"diff {agree:.1e}; first loss ours {ours_loss:.3f}, flax "
        f"{flax_loss:.3f}, torch {torch_loss:.3f}",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    for mode, (a, b, c) in {
        "train": (ours_train, lax_train, flax_train),
        "infer": (ours_infer, lax_infer, flax_infer),
    }.items():
        t_run, layout, layout_times = torch_progs[mode]
        cands = {"ours": a, "ours (lax)": b, "flax": c, "torch": t_run}
        if alt is not None:
            cands["ours (versus)"] = alt[0 if mode == "train" else 1]
        t = common.measure(cands, settings.rounds, settings.reps, settings.order)
        r = {k: common.ratio(t["ours"], t[k]) for k in cands}
        rows.append(
            {
                "model": f"{name} ({spec.describe()})",
                "mode": mode,
                "ours": common.format_ms(t["ours"].median),
                "lax": common.format_ms(t["ours (lax)"].median),
                "flax": common.format_ms(t["flax"].median),
                "torch": f"{common.format_ms(t['torch'].median)} "
                f"{common.layout_cell(layout, layout_times)}",
                "ours/torch": common.format_ratio(r["torch"]),
                "ours/flax": common.format_ratio(r["flax"]),
                "ours/lax": common.format_ratio(r["ours (lax)"]),
                "flax/torch": common.format_ratio(common.ratio(t["flax"], t["torch"])),
                "compile": f"{a.total_s:.1f} / {b.total_s:.1f} / {c.total_s:.1f}",
            }
        )
        if alt is not None:
            rows[-1]["versus"] = common.format_ms(t["ours (versus)"].median)
            rows[-1]["ours/versus"] = common.format_ratio(r["ours (versus)"])
        print(
            f"  {name} [{mode}]: ours/torch {rows[-1]['ours/torch']}, ours/flax "
            f"{rows[-1]['ours/flax']}, ours/ours(lax) {rows[-1]['ours/lax']}"
            + (f", ours/ours(versus) {rows[-1]['ours/versus']}" if alt is not None else ""),
            file=sys.stderr,
            flush=True,
        )
    return rows


HEADERS = {
    "model": "model (input)",
    "mode": "mode",
    "ours": "ours ms",
    "lax": "ours (lax) ms",
    "flax": "flax ms",
    "torch": "torch ms (layout)",
    "ours/torch": "ours/torch",
    "ours/flax": "ours/flax",
    "ours/lax": "ours/ours (lax)",
    "flax/torch": "flax/torch",
    "compile": "compile s ours / lax / flax",
}
#: The columns added by ``--versus``.
VERSUS_HEADERS = {"versus": "ours (versus) ms", "ours/versus": "ours/ours (versus)"}


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, times every model and prints the report."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument(
        "--xception-size",
        type=int,
        default=10,
        help="height and width of the Xception block's 728-channel input (default 10)",
    )
    parser.add_argument(
        "--fast-paths",
        default="auto",
        help="fast paths of `ours`: 'auto' (the backend's default), or names of "
        "cnn_jax.ops.FAST_PATHS, comma-separated (to measure one lever at a time)",
    )
    parser.add_argument(
        "--versus",
        default=None,
        help="also time `ours` with these fast paths (same syntax as --fast-paths; 'none' "
        "for none): the columns ours (versus) and ours/ours (versus)",
    )
    extra, rest = parser.parse_known_args(argv)
    # The XLA flags (--xla-flags, --xla-defaults) are set here, before JAX starts.
    settings = common.parse_args(__doc__.splitlines()[0], rest, order="block", parents=[parser])
    from cnn_jax.ops import enabled_fast_paths, use_fast_paths

    for option, value in (("--fast-paths", extra.fast_paths), ("--versus", extra.versus)):
        try:
            if value is not None:
                with use_fast_paths(value):
                    pass
        except (TypeError, ValueError) as err:
            parser.error(f"{option} (={value!r}): {err}")

    threads = common.set_threads(settings.threads, settings.omp_wait_policy)
    if common.optional_torch() is None:
        raise SystemExit("benchmarks.train_step_cpu needs PyTorch CPU: pip install -e '.[torch]'")
    names = [m for m in extra.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown --models {unknown}; known: {', '.join(MODELS)}")
    if settings.only:
        names = [m for m in names if settings.only in m]
    env = common.environment_lines(settings, threads)
    import jax

    with use_fast_paths(extra.fast_paths):
        chosen = ", ".join(sorted(enabled_fast_paths())) or "none"
    env.append(
        f"- JAX backend {jax.default_backend()}; fast paths of `ours`: {chosen} "
        f"(--fast-paths {extra.fast_paths})"
    )
    headers = dict(HEADERS)
    if extra.versus is not None:
        with use_fast_paths(extra.versus):
            versus = ", ".join(sorted(enabled_fast_paths())) or "none"
        env.append(f"- fast paths of `ours (versus)`: {versus} (--versus {extra.versus})")
        headers.update(VERSUS_HEADERS)
    print("### Training step and inference on the CPU\n", flush=True)
    print("\n".join(env), flush=True)
    t_start = time.perf_counter()
    all_specs = zoo.specs(settings.quick, extra.xception_size)
    modules = zoo.jax_models()
    rows = []
    for name in names:
        rows += run_model(
            name,
            all_specs[name],
            modules[name],
            settings,
            threads,
            extra.fast_paths,
            extra.versus,
        )
    print("\n".join(common.end_lines(t_start)) + "\n")
    print(common.markdown_table(list(headers.values()), [[r[k] for k in headers] for r in rows]))


if __name__ == "__main__":
    main()
