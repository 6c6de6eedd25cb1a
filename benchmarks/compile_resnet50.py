"""Compile time of a ResNet-50 training step at 224x224 on the CPU, with and without fast paths.

The step is the one of ``benchmarks.zoo.steps``: forward in training mode
(batch statistics), softmax cross-entropy, gradient, SGD with momentum 0.9, batch-norm
statistics updated, the state donated; ``cnn_jax.models.resnet.ResNet50`` (1000
classes). Only shapes are needed to compile: the variables come from
``jax.eval_shape(model.init, ...)`` (no memory, no initialization), and the program is
traced, lowered and compiled with ``jax.jit(step).lower(...).compile()``, each stage
timed on its own (after a warm-up compilation of a tiny function), once with cnn_jax's
fast paths (the CPU default) and once without
(``use_fast_paths(False)``), in separate fresh traces. The persistent
compilation cache is off (``jax_enable_compilation_cache=False``), so every compile is
a real one. ``--run`` also executes the compiled fast-path step once on random data.

Run from the repository root::

    python -m benchmarks.compile_resnet50              # batch 32
    python -m benchmarks.compile_resnet50 --batch 8 --run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import common
from benchmarks.zoo.steps import train_step_fns


def compile_once(batch: int, size: int, fast: bool) -> dict[str, Any]:
    """Traces, lowers and compiles the step; returns the stage times and the executable."""
    import jax
    import jax.numpy as jnp
    import optax

    from cnn_jax.models.resnet import ResNet50
    from cnn_jax.ops import use_fast_paths

    model = ResNet50(num_classes=1000)
    tx = optax.sgd(0.1, momentum=0.9)
    x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    y = jax.ShapeDtypeStruct((batch,), jnp.int32)
    variables = jax.eval_shape(
        lambda k: model.init(k, jnp.zeros((1, size, size, 3))), jax.random.key(0)
    )
    params, stats = variables["params"], variables["batch_stats"]
    state = (params, stats, jax.eval_shape(tx.init, params))
    _, step = train_step_fns(model, tx)  # new function objects: no trace shared
    with use_fast_paths(fast):
        t0 = time.perf_counter()
        traced = jax.jit(step, donate_argnums=0).trace(state, x, y)
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        compiled = lowered.compile()
        t3 = time.perf_counter()
    hlo = compiled.as_text() or ""
    return {
        "trace": t1 - t0,
        "lower": t2 - t1,
        "compile": t3 - t2,
        "total": t3 - t0,
        "hlo_lines": hlo.count("\n"),
        "compiled": compiled,
        "shapes": (state, x, y),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, compiles the step with and without fast paths, prints a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--run", action="store_true", help="run the fast-path step once")
    common.add_setup_arguments(parser)
    ns = parser.parse_args(argv)
    used = common.start(ns, omp_wait_policy="unset")
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    print("### ResNet-50 training step: compile time on the CPU\n")
    print("\n".join(common.machine_lines(used)))
    print(
        f"- input: batch {ns.batch}, {ns.size}x{ns.size}x3, float32; SGD momentum, BN batch stats"
    )
    # Warm-up: the first compilation of a process also initializes the compiler.
    jax.jit(lambda v: v * 2).lower(jax.ShapeDtypeStruct((8,), "float32")).compile()
    rows = []
    results = {}
    for fast in (True, False):
        r = compile_once(ns.batch, ns.size, fast)
        results[fast] = r
        label = "fast paths on (CPU default)" if fast else "fast paths off (lax)"
        rows.append(
            [
                label,
                f"{r['trace']:.1f}",
                f"{r['lower']:.1f}",
                f"{r['compile']:.1f}",
                f"**{r['total']:.1f}**",
                str(r["hlo_lines"]),
            ]
        )
    print(f"- load average at end (1, 5, 15 min): {common.load_average()}\n")
    headers = ["step", "trace s", "lower s", "XLA compile s", "total s", "optimized HLO lines"]
    print(common.markdown_table(headers, rows))
    if ns.run:
        import jax.numpy as jnp
        import numpy as np

        r = results[True]
        state_shapes, xs, ys = r["shapes"]
        state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state_shapes)
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal(xs.shape), jnp.float32)
        y = jnp.asarray(rng.integers(0, 1000, ys.shape), jnp.int32)
        t0 = time.perf_counter()
        _, loss = r["compiled"](state, x, y)
        jax.block_until_ready(loss)
        print(f"\nOne fast-path step: {time.perf_counter() - t0:.1f} s, loss {float(loss):.3f}")


if __name__ == "__main__":
    main()
