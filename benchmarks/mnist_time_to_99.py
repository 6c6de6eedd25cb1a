"""Time to 99% on MNIST: the ``cnn_mnist`` study in cnn_jax and in PyTorch CPU, side by side.

Both frameworks train the same network with the same recipe, read from
``experiments/configs/cnn_mnist.py``: ``CNNMnist`` (two blocks of two 3x3 convolutions
with BatchNorm and ReLU, 32 then 64 channels, 2x2 max pooling, a 256-unit hidden layer,
dropout, a linear output), the same initialization scheme (He-normal truncated
convolution kernels, LeCun-normal truncated dense kernels, zero biases, BatchNorm with
PyTorch's momentum and unbiased running variance), AdamW with decoupled weight decay
on the kernels only, the same learning rate at every step (the schedule of
``cnn_jax.train.make_optimizer``, evaluated once and fed to PyTorch), label smoothing,
random crops of the edge-padded image per example, the same batches in the same order
(``cnn_jax.data.input_pipeline``) and the same batch size.

The JAX side is cnn_jax as the training loop uses it: ``cnn_jax.models`` (the model),
``make_optimizer``, ``create_train_state``, ``train_step`` / ``eval_step`` (jitted,
the train step with the config's on-device augmentation and a donated state) and
``input_pipeline``. The PyTorch side is eager PyTorch (no ``torch.compile``) with
``torch.set_num_threads``, in the memory format (contiguous or ``channels_last``) that
was faster in a short pre-measurement of both.

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
import datetime
import functools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks import common

CONFIG = "experiments/configs/cnn_mnist.py"


@dataclass
class Runner:
    """One framework's training: a chunk of steps, an evaluation, and the record."""

    name: str
    train_chunk: Callable[[int, int], None]  # (first step, number of steps)
    evaluate: Callable[[], float]
    train_s: float = 0.0
    chunk_s: list[float] = field(default_factory=list)
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # step, acc, train_s
    note: str = ""
    compile_s: float | None = None
    num_params: int = 0
    schedule: Any = None


# ------------------------------------------------------------------------------ JAX


def make_jax_runner(config: Any, train_iter: Any, test_data: dict[str, np.ndarray]) -> Runner:
    """The JAX side: cnn_jax's model, optimizer, steps and pipeline, as the loop uses them.

    Args:
      config: the ``cnn_mnist`` config.
      train_iter: the training ``BatchIterator`` (its ``batch_at`` is shared by both).
      test_data: the test split's arrays.

    Returns:
      The runner; its ``compile_s`` holds the compile time of the train and eval steps.
    """
    import jax
    import jax.numpy as jnp

    from cnn_jax import data as data_lib
    from cnn_jax import models
    from cnn_jax.train import create_train_state, eval_step, make_optimizer, train_step

    steps_per_epoch = train_iter.steps_per_epoch
    num_steps = int(config.num_epochs) * steps_per_epoch
    model = models.get_model(config.model, num_classes=10, **dict(config.model_kwargs))
    tx, schedule = make_optimizer(config.optim, steps_per_epoch, num_steps)
    init_key, dropout_key = jax.random.split(jax.random.key(int(config.seed)))
    first = train_iter.batch_at(0)
    state = create_train_state(model, tx, init_key, (1, *first["image"].shape[1:]))
    step_fn = functools.partial(
        train_step,
        base_key=dropout_key,
        schedule=schedule,
        label_smoothing=float(config.label_smoothing),
        augment_ops=tuple((name, dict(kw)) for name, kw in config.augment),
    )

    def to_device(batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return {k: jnp.asarray(v) for k, v in batch.items() if k in ("image", "label", "mask")}

    test_batches = [
        to_device(b) for b in data_lib.input_pipeline(config, "test", rng_seed=0, data=test_data)
    ]
    t0 = time.perf_counter()
    p_train = jax.jit(step_fn, donate_argnums=0).lower(state, to_device(first)).compile()
    p_eval = jax.jit(eval_step).lower(state, test_batches[0]).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def train_chunk(start: int, n: int) -> None:
        s = holder["state"]
        for step in range(start, start + n):
            s, _ = p_train(s, to_device(train_iter.batch_at(step)))
        jax.block_until_ready(s)
        holder["state"] = s

    def evaluate() -> float:
        hits = count = 0.0
        for b in test_batches:
            out = jax.device_get(p_eval(holder["state"], b))
            hits += float(out["top1"])
            count += float(out["count"])
        return hits / count

    return Runner(
        "cnn_jax (JAX)",
        train_chunk,
        evaluate,
        note=f"jit, {jax.devices()[0].platform}",
        compile_s=compile_s,
        num_params=sum(int(x.size) for x in jax.tree.leaves(state.params)),
        schedule=schedule,
    )


# -------------------------------------------------------------------------- PyTorch


def torch_model(config: Any, torch: Any) -> Any:
    """``CNNMnist`` in PyTorch, initialized with the same schemes as the Flax model.

    Args:
      config: the config (``model_kwargs`` may set ``widths``, ``hidden``, ``dropout``).
      torch: the ``torch`` module.

    Returns:
      An ``nn.Module`` taking ``(N, 1, 28, 28)`` and returning logits.
    """
    nn = torch.nn
    kw = dict(config.model_kwargs)
    widths = tuple(kw.get("widths", (32, 64)))
    hidden = int(kw.get("hidden", 256))
    dropout = float(kw.get("dropout", 0.3))

    def trunc_normal_(w: Any, scale: float, fan_in: int) -> None:
        # variance_scaling(scale, 'fan_in', 'truncated_normal') as in jax/flax: a normal
        # truncated at +-2 std, its std corrected so the variance is scale / fan_in.
        std = math.sqrt(scale / fan_in) / 0.87962566103423978
        nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)

    layers: list[Any] = []
    c_in = 1
    for width in widths:
        for _ in range(2):
            conv = nn.Conv2d(c_in, width, 3, padding=1, bias=False)
            trunc_normal_(conv.weight, 2.0, c_in * 9)  # he_normal
            layers += [conv, nn.BatchNorm2d(width, eps=1e-5, momentum=0.1), nn.ReLU()]
            c_in = width
        layers.append(nn.MaxPool2d(2))
    flat = c_in * 7 * 7
    dense = nn.Linear(flat, hidden)
    out = nn.Linear(hidden, 10)
    for lin, fan in ((dense, flat), (out, hidden)):
        trunc_normal_(lin.weight, 1.0, fan)  # lecun_normal, flax's Dense default
        nn.init.zeros_(lin.bias)
    layers += [nn.Flatten(), dense, nn.ReLU(), nn.Dropout(dropout), out]
    return nn.Sequential(*layers)


def torch_random_crop(torch: Any, x: Any, padding: int, mode: str, gen: Any) -> Any:
    """Per-example random crops of the padded batch, the size of the input (NCHW).

    Args:
      torch: the ``torch`` module.
      x: ``(N, C, H, W)``.
      padding: pixels added on each side.
      mode: cnn_jax's ``padding_mode``: ``'replicate'``, ``'reflect'`` or ``'zeros'``.
      gen: a ``torch.Generator``.

    Returns:
      ``(N, C, H, W)``.
    """
    f = torch.nn.functional
    n, c, h, w = x.shape
    torch_mode = {"replicate": "replicate", "reflect": "reflect", "zeros": "constant"}[mode]
    xp = f.pad(x, (padding,) * 4, mode=torch_mode)
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=gen)
    rows = off[0][:, None] + torch.arange(h)
    cols = off[1][:, None] + torch.arange(w)
    xp = xp.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return xp.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def make_torch_runner(
    config: Any,
    train_iter: Any,
    test_data: dict[str, np.ndarray],
    lrs: np.ndarray,
    premeasure_steps: int,
) -> Runner:
    """The PyTorch side: the same network, recipe and batches, in eager PyTorch.

    Args:
      config: the ``cnn_mnist`` config.
      train_iter: the training ``BatchIterator`` (shared with the JAX side).
      test_data: the test split's arrays.
      lrs: the learning rate of every step (cnn_jax's schedule).
      premeasure_steps: steps per memory format in the pre-measurement that picks it.

    Returns:
      The runner.
    """
    import torch

    from cnn_jax import data as data_lib

    torch.manual_seed(int(config.seed))
    gen = torch.Generator().manual_seed(int(config.seed))
    ls = float(config.label_smoothing)
    crops = [dict(kw) for name, kw in config.augment if name == "random_crop"]
    others = [name for name, _ in config.augment if name != "random_crop"]
    if others:
        raise NotImplementedError(f"augmentations {others} have no PyTorch version here")
    optim = config.optim
    if optim.name != "adamw":
        raise NotImplementedError(f"optimizer {optim.name!r}: only 'adamw' is mirrored")

    def build() -> tuple[Any, Any]:
        model = torch_model(config, torch)
        decay = [p for p in model.parameters() if p.ndim > 1]
        no_decay = [p for p in model.parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": float(optim.weight_decay)},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=float(lrs[0]),
            betas=(float(optim.b1), float(optim.b2)),
            eps=float(optim.eps),
            foreach=True,
        )
        return model, opt

    def tensor(batch: dict[str, np.ndarray]) -> tuple[Any, Any]:
        x = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2)))
        y = torch.from_numpy(batch["label"].astype(np.int64))
        return x, y

    def step(model: Any, opt: Any, batch: dict[str, np.ndarray], lr: float, fmt: str) -> None:
        x, y = tensor(batch)
        for kw in crops:
            x = torch_random_crop(
                torch, x, kw.get("padding", 4), kw.get("padding_mode", "reflect"), gen
            )
        if fmt == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=ls)
        loss.backward()
        opt.step()

    # Pre-measurement: a throw-away copy in each format, interleaved, on the first batches.
    times: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
    trial = {}
    for fmt in times:
        m, o = build()
        if fmt == "channels_last":
            m = m.to(memory_format=torch.channels_last)
        m.train()
        trial[fmt] = (m, o)
        for i in range(2):  # warm-up
            step(m, o, train_iter.batch_at(i), float(lrs[i]), fmt)
    for i in range(premeasure_steps):
        for fmt, (m, o) in trial.items():
            t0 = time.perf_counter()
            step(m, o, train_iter.batch_at(i), 1e-3, fmt)
            times[fmt].append(time.perf_counter() - t0)
    med = {fmt: statistics.median(t) for fmt, t in times.items()}
    fmt = min(med, key=med.get)
    other = max(med, key=med.get)
    del trial

    torch.manual_seed(int(config.seed))
    gen.manual_seed(int(config.seed))
    model, opt = build()
    if fmt == "channels_last":
        model = model.to(memory_format=torch.channels_last)

    test_batches = []
    for b in data_lib.input_pipeline(config, "test", rng_seed=0, data=test_data):
        x, y = tensor(b)
        if fmt == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        test_batches.append((x, y, torch.from_numpy(b["mask"])))

    def train_chunk(start: int, n: int) -> None:
        model.train()
        for s in range(start, start + n):
            step(model, opt, train_iter.batch_at(s), float(lrs[s]), fmt)

    def evaluate() -> float:
        model.eval()
        hits = count = 0
        with torch.no_grad():
            for x, y, mask in test_batches:
                hits += int(((model(x).argmax(1) == y) & mask).sum())
                count += int(mask.sum())
        return hits / count

    return Runner(
        f"PyTorch {torch.__version__} (eager)",
        train_chunk,
        evaluate,
        note=f"{fmt} ({other} x{med[other] / med[fmt]:.2f} slower)",
        num_params=sum(p.numel() for p in model.parameters()),
    )


# ----------------------------------------------------------------------------- driver


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few chunks on part of the data")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
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
    return p.parse_args(argv)


def environment_lines(used: int) -> list[str]:
    """Markdown bullets: command, date, machine and versions."""
    v = common.versions()
    torch = common.optional_torch()
    return [
        f"- command: `{common.command_line()}`",
        f"- date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S}",
        f"- machine: {common.cpu_model()}, {os.cpu_count()} cores, {used} used (affinity; "
        f"XLA:CPU thread pool; torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}), "
        f"{platform.system()} {platform.release()}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
    ]


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

    load_start = common.load_average()
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
    print("\n".join(environment_lines(used)))
    print(
        f"- training steps of `{CONFIG}` (one batch from the pipeline, forward, backward, "
        f"update; JAX compiled and waited for), {rounds} interleaved rounds x {reps} reps "
        "(benchmarks.common.measure)"
    )
    print(f"- load average at start (1, 5, 15 min): {load_start}")
    print(f"- load average at end (1, 5, 15 min): {common.load_average()}")
    print(f"- wall time: {time.perf_counter() - wall0:.0f} s")
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
    used = common.set_threads(args.threads, args.omp_wait_policy)
    if args.step_times:
        step_times([int(b) for b in args.step_times.split(",")], used, args.quick)
        return
    load_start = common.load_average()
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
    wall = time.perf_counter() - wall0
    load_end = common.load_average()

    print()
    print("\n".join(environment_lines(used)))
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
    print(f"- load average at start (1, 5, 15 min): {load_start}")
    print(f"- load average at end (1, 5, 15 min): {load_end}")
    print(f"- wall time: {wall:.0f} s")
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
