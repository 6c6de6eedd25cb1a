"""Compile time and peak memory of a very deep CIFAR training step on the CPU.

The step is the one of ``benchmarks.zoo.steps`` (forward in training mode, softmax
cross-entropy, gradient, SGD with momentum 0.9, batch-norm statistics updated, the
state donated) for ``cnn_jax.models.preact_resnet.PreActResNetCifar`` (ResNet-1001 by
default) on 32x32x3 CIFAR images, in up to four forms: the identical units through
``nn.scan`` (``scan``), the same with ``nn.remat`` (``scan+remat``), unrolled
(``unrolled``; slow to compile at depth 1001, so only with ``--unrolled``), and scanned
without the ``'loop_conv'`` fast path, i.e. with ``lax``'s convolution derivatives
inside the loop (``scan, lax derivatives``, with ``--lax-derivatives``: the reference
the fast path is measured against). Only
shapes are needed: the variables come from ``jax.eval_shape``; the step is traced,
lowered and compiled (``jax.jit(step).trace(...).lower().compile()``) after a warm-up
compilation of a tiny function, with the persistent compilation cache off. Each stage
is timed in wall-clock seconds, and the three together in the process's CPU time (all
threads): on a loaded machine the wall clock exceeds it by the time spent waiting for
a core. Peak memory is XLA's own account of the compiled program
(``compiled.memory_analysis()``): arguments + outputs + temporaries - aliased
(donated) bytes, i.e. what one step holds at most; ``--run`` also runs every compiled
form from the same initial weights on the same random batch, one warm-up and
``--steps`` timed steps each, and prints the median, its ratio to the first form's and
the loss after the last step (equal across forms up to rounding).

Run from the repository root::

    python -m benchmarks.deep_compile_cpu                  # ResNet-1001, batch 64
    python -m benchmarks.deep_compile_cpu --depth 164 --unrolled --lax-derivatives --run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import common
from benchmarks.zoo.steps import train_step_fns

#: form -> (scan, remat, the 'loop_conv' fast path in the scanned stages).
FORMS = {
    "scan": (True, False, True),
    "scan+remat": (True, True, True),
    "unrolled": (False, False, True),
    "scan, lax derivatives": (True, False, False),
}


def compile_form(depth: int, batch: int, form: str) -> dict[str, Any]:
    """Traces, lowers and compiles one form of the step; times, memory, the executable."""
    import jax
    import jax.numpy as jnp
    import optax

    from cnn_jax.models.preact_resnet import PreActResNetCifar
    from cnn_jax.ops import enabled_fast_paths, use_fast_paths

    scan, remat, loop_conv = FORMS[form]
    model = PreActResNetCifar(depth=depth, scan=scan, remat=remat)
    tx = optax.sgd(0.1, momentum=0.9)
    x = jax.ShapeDtypeStruct((batch, 32, 32, 3), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    variables = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    )
    params, stats = variables["params"], variables["batch_stats"]
    state = (params, stats, jax.eval_shape(tx.init, params))
    _, step = train_step_fns(model, tx)
    c0, t0 = time.process_time(), time.perf_counter()
    paths = enabled_fast_paths() if loop_conv else enabled_fast_paths() - {"loop_conv"}
    with use_fast_paths(paths):  # read while tracing
        traced = jax.jit(step, donate_argnums=0).trace(state, x, y)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3, c3 = time.perf_counter(), time.process_time()
    mem = compiled.memory_analysis()
    peak = None
    if mem is not None:
        peak = (
            mem.argument_size_in_bytes
            + mem.output_size_in_bytes
            + mem.temp_size_in_bytes
            - mem.alias_size_in_bytes
        )
    return {
        "model": model,
        "tx": tx,
        "trace": t1 - t0,
        "lower": t2 - t1,
        "compile": t3 - t2,
        "total": t3 - t0,
        "cpu": c3 - c0,
        "temp": None if mem is None else mem.temp_size_in_bytes,
        "peak": peak,
        "compiled": compiled,
        "shapes": (state, x, y),
    }


def _initial_states(results: dict[str, dict[str, Any]], depth: int) -> dict[str, Any]:
    """One set of initial weights for every form, a copy each (the steps donate them).

    The unrolled net's weights when it is compiled (stacked for the scanned forms,
    ``stack_unrolled``), else the scanned net's.
    """
    import jax
    import jax.numpy as jnp

    from cnn_jax.models.preact_resnet import stack_unrolled

    probe = jnp.zeros((1, 32, 32, 3), jnp.float32)
    first = results["unrolled"] if "unrolled" in results else next(iter(results.values()))
    variables = jax.jit(first["model"].init)(jax.random.key(0), probe)
    stacked = stack_unrolled(variables, depth) if "unrolled" in results else variables
    states = {}
    for form, r in results.items():
        v = variables if form == "unrolled" else stacked
        state = (v["params"], v["batch_stats"], r["tx"].init(v["params"]))
        states[form] = jax.tree.map(jnp.array, state)  # a copy: the step donates it
    return states


def _run_steps(results: dict[str, dict[str, Any]], depth: int, steps: int) -> None:
    """Runs every form from the same weights on the same batch; prints the step times.

    Also the loss after the last step, equal across forms up to rounding (they compute
    one function).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    _, xs, ys = next(iter(results.values()))["shapes"]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(xs.shape), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, ys.shape), jnp.int32)
    states = _initial_states(results, depth)
    rows, first = [], None
    for form, r in results.items():
        state, loss = r["compiled"](states.pop(form), x, y)  # warm-up
        jax.block_until_ready(loss)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            state, loss = r["compiled"](state, x, y)
            jax.block_until_ready(loss)
            times.append(time.perf_counter() - t0)
        median = float(np.median(times))
        first = median if first is None else first
        rows.append(
            [
                form,
                f"{median:.2f}",
                f"{min(times):.2f}-{max(times):.2f}",
                f"{median / first:.2f}",
                f"{float(loss):.4f}",
            ]
        )
    headers = ["form", "step s (median)", "range", "x first form", "loss after the last step"]
    print(f"\nTraining steps after one warm-up, {steps} timed per form:\n")
    print(common.markdown_table(headers, rows))


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, compiles each form, prints a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=1001, help="9n + 2 (default 1001)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--unrolled", action="store_true", help="also compile the unrolled form")
    parser.add_argument("--no-remat", action="store_true", help="skip the scan+remat form")
    parser.add_argument(
        "--run", action="store_true", help="run each compiled form's step (1 + --steps calls)"
    )
    parser.add_argument("--steps", type=int, default=2, help="timed steps per form (median)")
    parser.add_argument(
        "--lax-derivatives",
        action="store_true",
        help="also the scanned form without the 'loop_conv' fast path (lax's derivatives "
        "inside the loop: slow on XLA:CPU)",
    )
    common.add_setup_arguments(parser)
    ns = parser.parse_args(argv)
    if ns.depth < 11 or (ns.depth - 2) % 9:
        parser.error(f"--depth (={ns.depth}) must be 9n + 2 with n >= 1")
    if ns.batch < 1:
        parser.error(f"--batch (={ns.batch}) must be positive")
    if ns.steps < 1:
        parser.error(f"--steps (={ns.steps}) must be positive")
    used = common.start(ns, omp_wait_policy="unset")
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    print(f"### Pre-activation ResNet-{ns.depth} training step: compile time and memory (CPU)\n")
    print("\n".join(common.machine_lines(used)))
    print(f"- input: batch {ns.batch}, 32x32x3, float32; SGD momentum, BN batch statistics")
    jax.jit(lambda v: v * 2).lower(jax.ShapeDtypeStruct((8,), "float32")).compile()
    forms = (
        ["scan"]
        + ([] if ns.no_remat else ["scan+remat"])
        + (["unrolled"] if ns.unrolled else [])
        + (["scan, lax derivatives"] if ns.lax_derivatives else [])
    )
    rows, results = [], {}
    for form in forms:
        r = compile_form(ns.depth, ns.batch, form)
        results[form] = r
        rows.append(
            [
                form,
                f"{r['trace']:.1f}",
                f"{r['lower']:.1f}",
                f"{r['compile']:.1f}",
                f"**{r['total']:.1f}**",
                f"{r['cpu']:.1f}",
                _gib(r["temp"]),
                f"**{_gib(r['peak'])}**",
            ]
        )
    print(f"- load average at end (1, 5, 15 min): {common.load_average()}\n")
    headers = [
        "form",
        "trace s",
        "lower s",
        "XLA compile s",
        "total s",
        "CPU s",
        "temp GiB",
        "peak GiB",
    ]
    print(common.markdown_table(headers, rows))
    if ns.run:
        _run_steps(results, ns.depth, ns.steps)


if __name__ == "__main__":
    main()
