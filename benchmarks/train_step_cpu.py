"""Training-step and inference time of small CNNs on the CPU: cnn_jax vs flax.linen vs PyTorch.

For each model, four programs compute the same architecture (each with its own
framework's initialization):

* ``ours``: the model written with ``cnn_jax.layers`` / ``cnn_jax.ops`` (``Conv``,
  ``BatchNorm``, ``DepthwiseSeparableConv``, ``ConvTranspose``, ``ops.max_pool``), traced
  with the fast paths of ``cnn_jax.ops.fast`` on (the CPU default);
* ``ours (lax)``: the same, traced inside ``cnn_jax.ops.use_fast_paths(False)``: plain
  ``lax`` convolutions and JAX's own derivatives;
* ``flax``: the same architecture written with plain ``flax.linen`` (``nn.Conv``,
  ``nn.BatchNorm``, ``nn.max_pool``, ``nn.ConvTranspose``);
* ``torch``: the same architecture in PyTorch CPU (eager), in the faster of the
  contiguous and ``channels_last`` memory formats (measured before timing, per model
  and mode), ``torch.set_num_threads(threads)``;
* with ``--versus NAMES``, also ``ours (versus)``: ``ours`` traced with other fast
  paths, to measure one lever against the rest in the same run.

``train`` times one training step: forward in training mode (batch statistics),
softmax cross-entropy, backward, SGD with momentum 0.9 (``optax.sgd`` /
``torch.optim.SGD``), batch-norm statistics updated. The JAX step is one jitted
program with the state donated; the PyTorch step is ``zero_grad``, forward,
``backward``, ``step``. ``infer`` times the forward pass in evaluation mode (running
statistics; ``torch.no_grad()``). All candidates of one model and mode are timed in
interleaved rounds (``benchmarks.common.measure``); within a round each candidate runs
one untimed step and then its ``reps`` timed steps (``--order block``, the steady state
of a training loop; ``--order sample`` alternates the candidates step by step, which
makes each JAX step find the malloc heap as the previous, different program left it).
A ratio is the median of all samples of one over the other's, with the range of the
per-round ratios.

Models (float32):

* ``lenet5``: ``cnn_jax.models.lenet.LeNet5Modern`` (ReLU, 2x2 max pooling), 32x32x1,
  batch 256;
* ``airbench94``: the network of Keller Jordan's ``airbench94.py`` (2x2 whitening
  conv with 24 filters and GELU, then three groups of conv3x3 -> maxpool2 -> BN ->
  GELU -> conv3x3 -> BN -> GELU of widths 64/256/256, maxpool3, linear 10 without
  bias, logits / 9), 32x32x3, batch 256; every parameter trained;
* ``resnet20``: ResNet-20 for CIFAR (He et al. 2015, option-A shortcuts;
  ``cnn_jax.models.resnet.ResNet20``), 32x32x3, batch 128;
* ``xception_block``: an Xception middle-flow block (Chollet 2017): three times
  ReLU -> separable conv 3x3 728->728 -> BN, plus the identity; then global average
  pooling and a linear layer; 728 channels at 10x10 (``--xception-size``), batch 64;
* ``unet_decoder``: a U-Net-like decoder (Ronneberger et al. 2015): from 8x8x256,
  three times [transposed conv 2x2/2 halving the channels -> conv3x3 -> BN -> ReLU],
  then a 1x1 conv to 10 classes; per-pixel cross-entropy on 64x64; batch 32.

Run from the repository root::

    python -m benchmarks.train_step_cpu              # every model, a few minutes
    python -m benchmarks.train_step_cpu --quick      # smaller batches (smoke test)
    python -m benchmarks.train_step_cpu --only resnet20 --xla-flags=--xla_cpu_use_xnnpack=true
    python -m benchmarks.train_step_cpu --xla-defaults=off   # without cnn_jax's XLA flags
    python -m benchmarks.train_step_cpu --versus auto --fast-paths none  # the fast paths' gain
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks import common

MODELS = ("lenet5", "airbench94", "resnet20", "xception_block", "unet_decoder")
CANDIDATES = ("ours", "ours (lax)", "flax", "torch")


# --------------------------------------------------------------------------- JAX models


def _jax_models(xception_size: int) -> dict[str, Any]:
    """``name -> (ours, flax)`` flax modules, ``__call__(x, train) -> logits``."""
    import flax.linen as nn
    import jax.numpy as jnp

    from cnn_jax import layers, ops
    from cnn_jax.models.lenet import LeNet5Modern
    from cnn_jax.models.resnet import ResNet20

    gelu = functools.partial(nn.gelu, approximate=False)

    class Logits(nn.Module):
        """Drops the features dict of a cnn_jax model."""

        model: nn.Module

        def __call__(self, x: Any, train: bool = False) -> Any:
            return self.model(x, train=train)[0]

    class FlaxLeNet5(nn.Module):
        @nn.compact
        def __call__(self, x: Any, train: bool = False) -> Any:
            x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
            x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
            x = x.reshape(x.shape[0], -1)
            x = nn.relu(nn.Dense(120)(x))
            x = nn.relu(nn.Dense(84)(x))
            return nn.Dense(10)(x)

    class Airbench(nn.Module):
        """airbench94's network; ``flax=True`` builds it from plain flax.linen."""

        flax: bool = False
        widths: Sequence[int] = (64, 256, 256)

        @nn.compact
        def __call__(self, x: Any, train: bool = False) -> Any:
            if self.flax:

                def conv(f: int, k: int, **kw: Any) -> nn.Module:
                    return nn.Conv(f, (k, k), **kw)

                def norm(h: Any) -> Any:
                    bn = nn.BatchNorm(use_running_average=not train, momentum=0.6, epsilon=1e-12)
                    return bn(h)

                def pool(h: Any, k: int) -> Any:
                    return nn.max_pool(h, (k, k), (k, k))

            else:
                conv = layers.Conv

                def norm(h: Any) -> Any:
                    return layers.BatchNorm(momentum=0.6, epsilon=1e-12)(h, train=train)

                pool = ops.max_pool
            x = gelu(conv(24, 2, padding="VALID", use_bias=True)(x))
            for w in self.widths:
                x = conv(w, 3, padding="SAME", use_bias=False)(x)
                x = gelu(norm(pool(x, 2)))
                x = conv(w, 3, padding="SAME", use_bias=False)(x)
                x = gelu(norm(x))
            x = pool(x, 3).reshape(x.shape[0], -1)
            return nn.Dense(10, use_bias=False)(x) / 9.0

    class FlaxBasicBlock(nn.Module):
        filters: int
        strides: int

        @nn.compact
        def __call__(self, x: Any, train: bool) -> Any:
            bn = functools.partial(nn.BatchNorm, use_running_average=not train)
            s = (self.strides, self.strides)
            y = nn.Conv(self.filters, (3, 3), s, padding=1, use_bias=False)(x)
            y = nn.relu(bn()(y))
            y = bn()(nn.Conv(self.filters, (3, 3), padding=1, use_bias=False)(y))
            if self.strides != 1 or x.shape[-1] != self.filters:
                extra = self.filters - x.shape[-1]
                x = x[:, :: self.strides, :: self.strides, :]
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
            return nn.relu(y + x)

    class FlaxResNet20(nn.Module):
        @nn.compact
        def __call__(self, x: Any, train: bool = False) -> Any:
            x = nn.Conv(16, (3, 3), padding=1, use_bias=False)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
            for i, w in enumerate((16, 32, 64)):
                for j in range(3):
                    x = FlaxBasicBlock(w, 2 if i > 0 and j == 0 else 1)(x, train)
            return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))

    class XceptionBlock(nn.Module):
        flax: bool = False
        channels: int = 728

        @nn.compact
        def __call__(self, x: Any, train: bool = False) -> Any:
            c = self.channels
            h = x
            for _ in range(3):
                h = nn.relu(h)
                if self.flax:
                    h = nn.Conv(c, (3, 3), padding="SAME", feature_group_count=c, use_bias=False)(h)
                    h = nn.Conv(c, (1, 1), use_bias=False)(h)
                    h = nn.BatchNorm(use_running_average=not train)(h)
                else:
                    h = layers.DepthwiseSeparableConv(c, 3, use_bias=False)(h)
                    h = layers.BatchNorm()(h, train=train)
            h = h + x
            return nn.Dense(10)(jnp.mean(h, axis=(1, 2)))

    class UNetDecoder(nn.Module):
        flax: bool = False
        widths: Sequence[int] = (128, 64, 32)

        @nn.compact
        def __call__(self, x: Any, train: bool = False) -> Any:
            for w in self.widths:
                if self.flax:
                    x = nn.ConvTranspose(w, (2, 2), (2, 2), padding="VALID")(x)
                    x = nn.Conv(w, (3, 3), padding="SAME", use_bias=False)(x)
                    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
                else:
                    x = layers.ConvTranspose(w, 2, strides=2)(x)
                    x = layers.Conv(w, 3, use_bias=False)(x)
                    x = nn.relu(layers.BatchNorm()(x, train=train))
            conv1 = nn.Conv if self.flax else layers.Conv
            return conv1(10, (1, 1) if self.flax else 1)(x)

    return {
        "lenet5": (Logits(LeNet5Modern(num_classes=10)), FlaxLeNet5()),
        "airbench94": (Airbench(), Airbench(flax=True)),
        "resnet20": (Logits(ResNet20(num_classes=10)), FlaxResNet20()),
        "xception_block": (XceptionBlock(), XceptionBlock(flax=True)),
        "unet_decoder": (UNetDecoder(), UNetDecoder(flax=True)),
    }


# --------------------------------------------------------------------------- torch models


def _torch_models() -> dict[str, Callable[[], Any]]:
    """``name -> constructor`` of the PyTorch modules (NCHW)."""
    import torch
    from torch import nn

    class LeNet5(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c3 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.f5, self.f6, self.out = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x: Any) -> Any:
            x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
            x = torch.max_pool2d(torch.relu(self.c3(x)), 2)
            x = torch.flatten(x, 1)
            return self.out(torch.relu(self.f6(torch.relu(self.f5(x)))))

    def bn(c: int) -> nn.Module:
        return nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)

    class Airbench(nn.Module):
        def __init__(self, widths: Sequence[int] = (64, 256, 256)) -> None:
            super().__init__()
            mods: list[nn.Module] = [nn.Conv2d(3, 24, 2), nn.GELU()]
            c = 24
            for w in widths:
                mods += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.MaxPool2d(2), bn(w)]
                mods += [nn.GELU(), nn.Conv2d(w, w, 3, padding=1, bias=False), bn(w), nn.GELU()]
                c = w
            mods += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(c, 10, bias=False)]
            self.net = nn.Sequential(*mods)

        def forward(self, x: Any) -> Any:
            return self.net(x) / 9.0

    class BasicBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.stride, self.extra = stride, c_out - c_in

        def forward(self, x: Any) -> Any:
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            if self.stride != 1 or self.extra:
                x = x[:, :, :: self.stride, :: self.stride]
                e = self.extra
                x = nn.functional.pad(x, (0, 0, 0, 0, e // 2, e - e // 2))
            return torch.relu(y + x)

    class ResNet20(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
            blocks, c = [], 16
            for i, w in enumerate((16, 32, 64)):
                for j in range(3):
                    blocks.append(BasicBlock(c, w, 2 if i > 0 and j == 0 else 1))
                    c = w
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, 10)

        def forward(self, x: Any) -> Any:
            x = self.blocks(torch.relu(self.bn1(self.conv1(x))))
            return self.fc(x.mean(dim=(2, 3)))

    class XceptionBlock(nn.Module):
        def __init__(self, c: int = 728) -> None:
            super().__init__()
            self.convs = nn.ModuleList()
            for _ in range(3):
                self.convs.append(
                    nn.Sequential(
                        nn.ReLU(),
                        nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                        nn.Conv2d(c, c, 1, bias=False),
                        nn.BatchNorm2d(c),
                    )
                )
            self.fc = nn.Linear(c, 10)

        def forward(self, x: Any) -> Any:
            h = x
            for m in self.convs:
                h = m(h)
            return self.fc((h + x).mean(dim=(2, 3)))

    class UNetDecoder(nn.Module):
        def __init__(self, c_in: int = 256, widths: Sequence[int] = (128, 64, 32)) -> None:
            super().__init__()
            mods: list[nn.Module] = []
            c = c_in
            for w in widths:
                mods += [nn.ConvTranspose2d(c, w, 2, stride=2)]
                mods += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                c = w
            mods += [nn.Conv2d(c, 10, 1)]
            self.net = nn.Sequential(*mods)

        def forward(self, x: Any) -> Any:
            return self.net(x)

    return {
        "lenet5": LeNet5,
        "airbench94": Airbench,
        "resnet20": ResNet20,
        "xception_block": XceptionBlock,
        "unet_decoder": UNetDecoder,
    }


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Spec:
    """A model's input: ``(batch, *spatial, channels)`` and whether labels are per pixel."""

    name: str
    batch: int
    spatial: tuple[int, int]
    channels: int
    dense_labels: bool = False

    def describe(self) -> str:
        """The input, for the table."""
        kind = "per-pixel labels" if self.dense_labels else "labels"
        return f"{self.spatial[0]}x{self.spatial[1]}x{self.channels}, batch {self.batch}, {kind}"


def specs(quick: bool, xception_size: int) -> dict[str, Spec]:
    """The inputs of every model (``--quick``: batches / 4)."""
    q = 4 if quick else 1
    return {
        "lenet5": Spec("lenet5", 256 // q, (32, 32), 1),
        "airbench94": Spec("airbench94", 256 // q, (32, 32), 3),
        "resnet20": Spec("resnet20", 128 // q, (32, 32), 3),
        "xception_block": Spec("xception_block", 64 // q, (xception_size,) * 2, 728),
        "unet_decoder": Spec("unet_decoder", 32 // q, (8, 8), 256, dense_labels=True),
    }


def batch_for(spec: Spec, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random batch: images NHWC float32 and int32 labels (per pixel for the decoder)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec.batch, *spec.spatial, spec.channels)).astype(np.float32)
    label_shape = (
        (spec.batch, *(s * 8 for s in spec.spatial)) if spec.dense_labels else (spec.batch,)
    )
    y = rng.integers(0, 10, label_shape).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------- JAX programs


@dataclass
class JaxProgram:
    """A compiled JAX step and its state, as a timed callable."""

    run: Callable[[], Any]
    compile_s: float
    first_loss: float | None = None
    temp_bytes: int | None = None
    ynn_fusions: dict[str, int] | None = None


def ynn_fusions(hlo_text: str) -> dict[str, int]:
    """Counts the YNNPACK fusions of an optimized XLA:CPU program by the JAX op they compute.

    Args:
      hlo_text: the program's optimized HLO (``compiled.as_text()``).

    Returns:
      ``{op: count}``, the op being the last part of the fusion's ``op_name`` metadata
      (``reduce_sum``, ``dot_general``, ...; ``?`` where a fusion has none).
    """
    counts: dict[str, int] = {}
    for line in hlo_text.splitlines():
        if '"__ynn_fusion"' not in line or " fusion(" not in line:
            continue
        name = re.search(r'op_name="([^"]*)"', line)
        op = name.group(1).rsplit("/", 1)[-1] if name else "?"
        counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items()))


def jax_programs(
    module: Any, spec: Spec, fast: Any, hlo_path: str | None = None
) -> tuple[JaxProgram, JaxProgram]:
    """Compiles the training step and the inference function of a flax module.

    Both are traced inside ``use_fast_paths(fast)``; new function objects are jitted
    for every call, so that no trace is shared between switch settings. With
    ``hlo_path``, the optimized HLO of the training step is written there.

    Returns:
      ``(train, infer)``.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from cnn_jax.ops import use_fast_paths

    x_np, y_np = batch_for(spec)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    variables = module.init(jax.random.key(0), x[:2], train=False)
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    tx = optax.sgd(0.01, momentum=0.9)
    opt_state = tx.init(params)

    def loss_fn(p: Any, s: Any, xb: Any, yb: Any) -> Any:
        logits, new = module.apply(
            {"params": p, "batch_stats": s}, xb, train=True, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, new.get("batch_stats", s)

    def step(state: Any, xb: Any, yb: Any) -> Any:
        p, s, o = state
        (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, xb, yb)
        updates, o = tx.update(grads, o, p)
        return (optax.apply_updates(p, updates), s, o), loss

    def infer(p: Any, s: Any, xb: Any) -> Any:
        return module.apply({"params": p, "batch_stats": s}, xb, train=False)

    # The step donates its state: inference gets its own copy of the variables.
    infer_vars = jax.tree.map(jnp.copy, (params, stats))
    state = [(params, stats, opt_state)]
    with use_fast_paths(fast):
        t0 = time.perf_counter()
        step_c = jax.jit(step, donate_argnums=0).lower(state[0], x, y).compile()
        t1 = time.perf_counter()
        hlo = step_c.as_text()
        if hlo_path:
            with open(hlo_path, "w") as f:
                f.write(hlo)
        infer_c = jax.jit(infer).lower(*infer_vars, x).compile()
        t2 = time.perf_counter()
    first_loss = float(jax.jit(loss_fn)(*infer_vars, x, y)[0])

    def run_step() -> Any:
        state[0], loss = step_c(state[0], x, y)
        return jax.block_until_ready(loss)

    def run_infer() -> Any:
        return jax.block_until_ready(infer_c(*infer_vars, x))

    memory = step_c.memory_analysis()
    temp = None if memory is None else int(memory.temp_size_in_bytes)
    train = JaxProgram(run_step, t1 - t0, first_loss, temp, ynn_fusions(hlo))
    return train, JaxProgram(run_infer, t2 - t1)


def grad_agreement(module: Any, spec: Spec, fast_paths: Any = True) -> float:
    """Max relative difference of the loss gradient between fast paths on and off."""
    import jax
    import jax.numpy as jnp
    import optax

    from cnn_jax.ops import use_fast_paths

    x_np, y_np = batch_for(spec)
    x, y = jnp.asarray(x_np[:8]), jnp.asarray(y_np[:8])
    variables = module.init(jax.random.key(0), x[:2], train=False)

    def loss(p: Any) -> Any:
        logits, _ = module.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = []
    for fast in (fast_paths, False):
        with use_fast_paths(fast):
            grads.append(jax.jit(jax.grad(lambda p: loss(p)))(variables["params"]))
    a, b = (jax.tree.leaves(g) for g in grads)
    return common.max_rel_error(a, b)


# --------------------------------------------------------------------------- torch programs


def torch_programs(
    name: str, spec: Spec, threads: int
) -> tuple[dict[str, tuple[Callable[[], Any], str, dict[str, float]]], float]:
    """PyTorch training step and inference, each in the faster memory format.

    Returns:
      ``({'train': (run, layout, layout_times), 'infer': ...}, first loss)``.
    """
    import torch

    torch.manual_seed(0)
    x_np, y_np = batch_for(spec)
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x_np, -1, 1)))
    yt = torch.from_numpy(y_np.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()
    out: dict[str, tuple[Callable[[], Any], str, dict[str, float]]] = {}
    first_loss = float("nan")
    for mode in ("train", "infer"):
        best = None
        times: dict[str, float] = {}
        for fmt in ("contiguous", "channels_last"):
            model = _torch_models()[name]()
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            model = model.to(memory_format=mf)
            xb = xt.contiguous(memory_format=mf)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            if mode == "train":
                model.train()
                if fmt == "contiguous":
                    with torch.no_grad():
                        first_loss = float(loss_fn(model(xb), yt))

                def run(model: Any = model, xb: Any = xb, opt: Any = opt) -> Any:
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(xb), yt)
                    loss.backward()
                    opt.step()
                    return loss

            else:
                model.eval()

                def run(model: Any = model, xb: Any = xb) -> Any:
                    with torch.no_grad():
                        return model(xb)

            times[fmt] = common.best_of(run)
            if best is None or times[fmt] < times[best[1]]:
                best = (run, fmt)
        assert best is not None
        out[mode] = (best[0], best[1], times)
    return out, first_loss


# --------------------------------------------------------------------------- main


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
    ours_train, ours_infer = jax_programs(ours_mod, spec, fast=fast_paths)
    lax_train, lax_infer = jax_programs(ours_mod, spec, fast=False)
    flax_train, flax_infer = jax_programs(flax_mod, spec, fast=False)
    alt = None if versus is None else jax_programs(ours_mod, spec, fast=versus)
    agree = grad_agreement(ours_mod, spec, fast_paths)
    torch_progs, torch_loss = torch_programs(name, spec, threads)
    print(
        f"  {name}: compiled in {time.perf_counter() - t0:.1f} s; gradient fast vs lax: max rel "
        f"diff {agree:.1e}; first loss ours {ours_train.first_loss:.3f}, flax "
        f"{flax_train.first_loss:.3f}, torch {torch_loss:.3f}",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    for mode, (a, b, c) in {
        "train": (ours_train, lax_train, flax_train),
        "infer": (ours_infer, lax_infer, flax_infer),
    }.items():
        t_run, layout, layout_times = torch_progs[mode]
        cands = {"ours": a.run, "ours (lax)": b.run, "flax": c.run, "torch": t_run}
        if alt is not None:
            cands["ours (versus)"] = alt[0 if mode == "train" else 1].run
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
                f"{common._layout_cell(layout, layout_times)}",
                "ours/torch": common.format_ratio(r["torch"]),
                "ours/flax": common.format_ratio(r["flax"]),
                "ours/lax": common.format_ratio(r["ours (lax)"]),
                "flax/torch": common.format_ratio(common.ratio(t["flax"], t["torch"])),
                "compile": f"{a.compile_s:.1f} / {b.compile_s:.1f} / {c.compile_s:.1f}",
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
    parser.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS")
    parser.add_argument(
        "--xla-defaults",
        choices=("on", "off"),
        default="on",
        help="off: CNN_JAX_XLA_DEFAULTS=0, XLA_FLAGS without cnn_jax.xla_defaults' flags",
    )
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
    # Before common.parse_args: --host-memory imports cnn_jax, which appends its default
    # XLA flags unless XLA_FLAGS already names them.
    if extra.xla_flags:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {extra.xla_flags}".strip()
    if extra.xla_defaults == "off":
        os.environ["CNN_JAX_XLA_DEFAULTS"] = "0"
    settings = common.parse_args(__doc__.splitlines()[0], rest, order="block", parents=[parser])
    import cnn_jax  # noqa: F401  (sets its default XLA flags before any backend exists)
    from cnn_jax.ops import use_fast_paths

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
    env.append(
        f"- XLA_FLAGS: `{os.environ.get('XLA_FLAGS', '')}` (--xla-defaults {extra.xla_defaults})"
    )
    import jax

    from cnn_jax.ops import enabled_fast_paths

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
    print("### Training step and inference on the CPU (issue 6)\n", flush=True)
    print("\n".join(env), flush=True)
    t_start = time.perf_counter()
    all_specs = specs(settings.quick, extra.xception_size)
    modules = _jax_models(extra.xception_size)
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
    print(f"- load average at end (1, 5, 15 min): {common.load_average()}")
    print(f"- wall time: {time.perf_counter() - t_start:.0f} s\n")
    print(common.markdown_table(list(headers.values()), [[r[k] for k in headers] for r in rows]))


if __name__ == "__main__":
    main()
