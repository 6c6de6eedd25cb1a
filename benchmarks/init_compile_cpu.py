"""Compile time of a model's initialization on the CPU, by JAX's random-bits scheme.

jax 0.10 generates random bits with the "partitionable" threefry scheme by default
(``jax_threefry_partitionable=True``). On XLA:CPU its kernel compiles several times
slower than the older scheme's, once per parameter shape, so a model's first
``init`` spends seconds in the compiler. This script compiles ``jax.jit(model.init)``
for a few models under both schemes, alternating them in each round (fresh function
objects and ``jax.clear_caches()`` before every compile, persistent cache off), and
prints the median compile time per scheme and their ratio.

The two schemes give different random numbers for the same key; cnn_jax works with
either. The test suite runs with the older one (``tests/conftest.py``).

Run from the repository root::

    python -m benchmarks.init_compile_cpu
    python -m benchmarks.init_compile_cpu --rounds 5 --models lenet5,resnet50
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import common

#: name -> (model factory name in ``cnn_jax.models``, keyword arguments, input shape).
MODELS: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "lenet5": ("lenet5", {}, (1, 32, 32, 1)),
    "googlenet": ("googlenet", {"num_classes": 10}, (1, 64, 64, 3)),
    "resnet20": ("resnet20", {"num_classes": 10}, (1, 32, 32, 3)),
    "resnet50": ("resnet50", {"num_classes": 1000}, (1, 224, 224, 3)),
}
SCHEMES = {"partitionable": True, "classic": False}


def compile_init(name: str, partitionable: bool) -> float:
    """Seconds to trace, lower and compile ``jax.jit(model.init)`` under one scheme.

    The scheme is set for this call only (the previous setting is restored).
    """
    import jax
    import jax.numpy as jnp

    from cnn_jax.models import get_model

    factory, kwargs, shape = MODELS[name]
    model = get_model(factory, **kwargs)
    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        jax.clear_caches()

        def init(key: Any) -> Any:
            return model.init(key, jnp.zeros(shape))

        t0 = time.perf_counter()
        jax.jit(init).lower(jax.random.key(0)).compile()
        return time.perf_counter() - t0
    finally:
        jax.config.update("jax_threefry_partitionable", before)


def measure(
    models: Sequence[str], rounds: int, compile_fn: Callable[[str, bool], float] = compile_init
) -> dict[str, dict[str, list[float]]]:
    """``{model: {scheme: [seconds per round]}}``, the schemes alternating in each round."""
    out: dict[str, dict[str, list[float]]] = {m: {s: [] for s in SCHEMES} for m in models}
    for r in range(rounds):
        order = list(SCHEMES) if r % 2 == 0 else list(reversed(SCHEMES))
        for m in models:
            for s in order:
                out[m][s].append(compile_fn(m, SCHEMES[s]))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, measures and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    common.add_setup_arguments(parser)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models names unknown models {unknown}; known: {', '.join(MODELS)}")
    if args.rounds < 1:
        parser.error(f"--rounds (={args.rounds}) must be positive")
    threads = common.start(args)
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    jax.jit(lambda x: x + 1).lower(1.0).compile()  # the compiler's own start-up
    print("### Compile time of model.init on the CPU, by random-bits scheme\n")
    print("\n".join(common.machine_lines(threads)))
    print(f"- {args.rounds} rounds, the schemes alternating; median over rounds\n")
    times = measure(models, args.rounds)
    rows = []
    for m in models:
        p = statistics.median(times[m]["partitionable"])
        c = statistics.median(times[m]["classic"])
        rows.append([m, f"{p:.2f}", f"{c:.2f}", f"{p / c:.1f}"])
    print(
        common.markdown_table(
            ["model", "partitionable s (jax default)", "classic s", "partitionable/classic"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
