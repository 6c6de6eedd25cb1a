"""The ``cnn_mnist`` study as two runners, cnn_jax and eager PyTorch, with the same recipe.

Both train the network of ``experiments/configs/cnn_mnist.py`` with its recipe:
``CNNMnist`` (two blocks of two 3x3 convolutions with BatchNorm and ReLU, 32 then 64
channels, 2x2 max pooling, a 256-unit hidden layer, dropout, a linear output), the same
initialization scheme (He-normal truncated convolution kernels, LeCun-normal truncated
dense kernels, zero biases, BatchNorm with PyTorch's momentum and unbiased running
variance), AdamW with decoupled weight decay on the kernels only, the same learning
rate at every step (the schedule of ``cnn_jax.train.make_optimizer``, evaluated once and
fed to PyTorch), label smoothing, random crops of the edge-padded image per example,
the same batches in the same order (``cnn_jax.data.input_pipeline``) and batch size.

The JAX side (``make_jax_runner``) is cnn_jax as the training loop uses it:
``cnn_jax.models``, ``make_optimizer``, ``create_train_state``, ``train_step`` /
``eval_step`` (jitted, the train step with the config's on-device augmentation and a
donated state) and ``input_pipeline``. The PyTorch side (``make_torch_runner``) is eager
PyTorch (no ``torch.compile``), in the memory format (contiguous or ``channels_last``)
that was faster in a short pre-measurement of both.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
