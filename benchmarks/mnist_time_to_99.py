"""Time to 99% on MNIST: the ``cnn_mnist`` study in cnn_jax and in PyTorch CPU, side by side.

Both frameworks train the same network with the same recipe, the same batches in the
same order, read from ``experiments/configs/cnn_mnist.py`` (``benchmarks.zoo.cnn_mnist``
has the two sides).

The two are trained in alternation, in chunks of ``--eval-every`` steps (JAX chunk,
PyTorch chunk, JAX chunk, ...), so that the load other processes put on the machine
hits both alike; after every chunk each is evaluated on the whole test set. Reported
for each: the training time (wall, evaluation excluded) until the test accuracy first
reaches the target (99.0%; the resolution is one chunk), the time per epoch, the final
test accuracy and, for JAX, the compile time of the train and eval steps (excluded
from the training time); and the JAX/PyTorch ratios, with the range of the per-chunk
ratios as a measure of the noise.

Run from the repository root::

    python -m benchmarks.mnist_time_to_99            # full run, 25-35 minutes on 2 cores
    python -m benchmarks.mnist_time_to_99 --quick    # smoke test, 1-2 minutes
    python -m benchmarks.mnist_time_to_99 --step-times=32,64,128   # step times only
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks import common
from benchmarks.zoo.cnn_mnist import Runner, make_jax_runner, make_torch_runner

CONFIG = "experiments/configs/cnn_mnist.py"


# ----------------------------------------------------------------------------- driver


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few chunks on part of the data")
    p.add_argument("--target", type=float, default=None, help="test accuracy (default 0.99)")
    p.add_argument("--epochs", type=int, default=None, help="default: the config's")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument(
        "--eval-every", type=int, default=None, help="steps per chunk (default: 1/4 epoch)"
    )
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "unset"])
    p.add_argument(
        "--step-times",
        default=None,
        metavar="BATCHES",
        help="instead of training: time single training steps of both, interleaved "
        "(3 rounds x 5 reps), at these comma-separated batch sizes, e.g. 32,64,128",
    )
    common.add_setup_arguments(p)
    return p.parse_args(argv)


def _stepper(runner: Runner) -> Callable[[], None]:
    """A callable that trains ``runner`` for one step, the next one each call."""
    count = [0]

    def run() -> None:
        runner.train_chunk(count[0], 1)
        count[0] += 1

    return run


def step_times(batch_sizes: Sequence[int], used: int, quick: bool) -> None:
    """Times one training step of each framework per batch size, interleaved.

    Each step fetches its batch from the pipeline, runs the forward and backward pass
    and the update (JAX: the compiled ``train_step``, waited for; PyTorch: eager, in
    its faster memory format). ``benchmarks.common.measure`` alternates the two.

    Args:
      batch_sizes: the batch sizes.
      used: CPUs used, for the header.
      quick: fewer rounds.
    """
    from cnn_jax import data as data_lib
    from experiments.configs import cnn_mnist

    header = common.machine_lines(used)
    wall0 = time.perf_counter()
    train_data = data_lib.load_dataset("mnist", "train")
    test_data = {k: v[:1000] for k, v in data_lib.load_dataset("mnist", "test").items()}
    rounds, reps = (3, 3) if quick else (3, 5)
    rows = []
    for bs in batch_sizes:
        config = cnn_mnist.get_config()
        config.batch_size = bs
        train_iter = data_lib.input_pipeline(config, "train", rng_seed=0, data=train_data)
        num_steps = int(config.num_epochs) * train_iter.steps_per_epoch
        jax_runner = make_jax_runner(config, train_iter, test_data)
        import jax
        import jax.numpy as jnp

        lrs = np.asarray(jax.vmap(jax_runner.schedule)(jnp.arange(num_steps)), np.float64)
        torch_runner = make_torch_runner(config, train_iter, test_data, lrs, premeasure_steps=3)
        t = common.measure(
            {"jax": _stepper(jax_runner), "torch": _stepper(torch_runner)}, rounds, reps
        )
        r = common.ratio(t["jax"], t["torch"])
        rows.append(
            [
                str(bs),
                common.format_ms(t["jax"].median),
                common.format_ms(t["torch"].median),
                f"{t['jax'].median / bs * 1e3:.2f}",
                f"{t['torch'].median / bs * 1e3:.2f}",
                f"{t['jax'].median / bs * 60000:.0f}",
                f"{t['torch'].median / bs * 60000:.0f}",
                common.format_ratio(r),
                torch_runner.note,
            ]
        )
        print(f"batch {bs}: JAX/PyTorch {common.format_ratio(r)}", flush=True)
    print()
    print("\n".join(header))
    print(
        f"- training steps of `{CONFIG}` (one batch from the pipeline, forward, backward, "
        f"update; JAX compiled and waited for), {rounds} interleaved rounds x {reps} reps "
        "(benchmarks.common.measure)"
    )
    print("\n".join(common.end_lines(wall0)))
    print()
    print(
        common.markdown_table(
            [
                "batch",
                "JAX ms/step",
                "PyTorch ms/step",
                "JAX ms/example",
                "PyTorch ms/example",
                "JAX s/epoch",
                "PyTorch s/epoch",
                "JAX/PyTorch",
                "PyTorch layout",
            ],
            rows,
        )
    )


def _fmt_s(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def time_to(runner: Runner, target: float) -> tuple[float | None, int | None]:
    """Training seconds and steps at the first evaluation at or above ``target``."""
    for step, acc, t in runner.curve:
        if acc >= target:
            return t, step
    return None, None


def main(argv: Sequence[str] | None = None) -> None:
    """Trains both, alternating chunks, and prints the tables."""
    args = parse_args(argv)
    used = common.start(args, args.omp_wait_policy)
    if args.step_times:
        step_times([int(b) for b in args.step_times.split(",")], used, args.quick)
        return
    header = common.machine_lines(used)
    wall0 = time.perf_counter()

    from cnn_jax import data as data_lib
    from experiments.configs import cnn_mnist

    config = cnn_mnist.get_config()
    if args.batch_size:
        config.batch_size = args.batch_size
    if args.epochs:
        config.num_epochs = args.epochs
    target = args.target if args.target is not None else (0.9 if args.quick else 0.99)

    train_data = data_lib.load_dataset("mnist", "train")
    test_data = data_lib.load_dataset("mnist", "test")
    if args.quick:  # a subset: shorter epochs and evaluations
        train_data = {k: v[:4800] for k, v in train_data.items()}
        test_data = {k: v[:2000] for k, v in test_data.items()}
        config.num_epochs = args.epochs or 1
    train_iter = data_lib.input_pipeline(
        config, "train", rng_seed=int(config.seed), data=train_data
    )
    spe = train_iter.steps_per_epoch
    num_steps = int(config.num_epochs) * spe
    chunk = args.eval_every or max(spe // 4, 1)

    jax_runner = make_jax_runner(config, train_iter, test_data)
    import jax
    import jax.numpy as jnp

    lrs = np.asarray(jax.vmap(jax_runner.schedule)(jnp.arange(num_steps)), np.float64)
    torch_runner = make_torch_runner(
        config, train_iter, test_data, lrs, premeasure_steps=3 if args.quick else 8
    )
    runners = [jax_runner, torch_runner]
    print(
        f"{config.model}: JAX {jax_runner.num_params:,} / PyTorch {torch_runner.num_params:,} "
        f"parameters; {num_steps} steps ({spe}/epoch, batch {config.batch_size}), chunks "
        f"of {chunk} steps; JAX compile {jax_runner.compile_s:.1f} s; PyTorch layout "
        f"{torch_runner.note}",
        flush=True,
    )
    step = 0
    while step < num_steps:
        n = min(chunk, num_steps - step)
        for r in runners:
            t0 = time.perf_counter()
            r.train_chunk(step, n)
            dt = time.perf_counter() - t0
            r.train_s += dt
            r.chunk_s.append(dt)
            acc = r.evaluate()
            r.curve.append((step + n, acc, r.train_s))
        step += n
        print(
            f"step {step} (epoch {step / spe:.2f}): "
            + "; ".join(
                f"{r.name.split()[0]} {100 * r.curve[-1][1]:.2f}% after {r.train_s:.0f} s"
                for r in runners
            ),
            flush=True,
        )
    end = common.end_lines(wall0)

    print()
    print("\n".join(header))
    print(
        f"- recipe: `{CONFIG}` ({config.model}, {config.optim.name} peak lr "
        f"{config.optim.learning_rate:g}, warm-up {config.optim.warmup_epochs:g} epoch + "
        f"{config.optim.schedule}, weight decay {config.optim.weight_decay:g}, label "
        f"smoothing {config.label_smoothing:g}, augment {list(config.augment)}), batch "
        f"{config.batch_size}, {config.num_epochs} epoch(s) of {spe} steps"
        + (
            " on a 4,800-example training subset and 2,000 test examples, --quick"
            if args.quick
            else ""
        )
    )
    print(
        f"- alternating chunks of {chunk} steps (JAX, then PyTorch), test accuracy after "
        f"each; times are training wall time, evaluation and JAX compilation excluded"
    )
    print("\n".join(end))
    print()
    jt, js = time_to(jax_runner, target)
    tt, ts = time_to(torch_runner, target)
    per_chunk = [a / b for a, b in zip(jax_runner.chunk_s, torch_runner.chunk_s)]
    rows = []
    for r, (t, s) in ((jax_runner, (jt, js)), (torch_runner, (tt, ts))):
        rows.append(
            [
                r.name,
                r.note,
                _fmt_s(t),
                "-" if s is None else f"{s} ({s / spe:.2f})",
                f"{r.train_s / (num_steps / spe):.0f}",
                f"{100 * r.curve[-1][1]:.2f}",
                f"{100 * max(a for _, a, _ in r.curve):.2f}",
                "-" if r.compile_s is None else f"{r.compile_s:.1f}",
            ]
        )
    rows.append(
        [
            "JAX / PyTorch",
            f"per-chunk time ratios: median {statistics.median(per_chunk):.2f}, "
            f"range {min(per_chunk):.2f}-{max(per_chunk):.2f}",
            _ratio(jt, tt),
            _ratio(js, ts),
            _ratio(jax_runner.train_s, torch_runner.train_s),
            "",
            "",
            "",
        ]
    )
    pct = f"{100 * target:g}%"
    print(
        common.markdown_table(
            [
                "framework",
                "layout / notes",
                f"time to {pct} (s)",
                f"steps (epochs) to {pct}",
                "time / epoch (s)",
                "final test acc %",
                "best test acc %",
                "compile s",
            ],
            rows,
        )
    )
    print()
    curve_rows = []
    for (s, ja, jt_), (_, ta, tt_) in zip(jax_runner.curve, torch_runner.curve):
        curve_rows.append(
            [
                str(s),
                f"{s / spe:.2f}",
                f"{100 * ja:.2f}",
                f"{jt_:.0f}",
                f"{100 * ta:.2f}",
                f"{tt_:.0f}",
            ]
        )
    print(
        common.markdown_table(
            [
                "step",
                "epoch",
                "JAX test acc %",
                "JAX train s",
                "PyTorch test acc %",
                "PyTorch train s",
            ],
            curve_rows,
        )
    )


if __name__ == "__main__":
    main()
