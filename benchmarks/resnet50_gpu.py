r"""ResNet-50 training throughput on one GPU: bf16, synthetic data on the device, MFU.

  python -m benchmarks.resnet50_gpu --batch=256 --steps=50 [--torch] [--out=FILE.json]

What is timed: the whole training step of ``cnn_jax.models.ResNet50`` at 224x224
(forward, backward, SGD with momentum and weight decay, BN statistics), bfloat16
compute with float32 parameters, the batch already on the device (a fixed synthetic
batch: no input pipeline), ``steps`` steps after ``warmup`` untimed ones, ending with
``jax.block_until_ready``. The compile time of the step is reported on its own.

MFU = images/s x FLOPs per image / the GPU's peak dense bf16 rate. FLOPs per image:
the analytic 3 x 2 x 4.09 GMACs = 24.5 GFLOP (forward + two backward matmul passes)
and XLA's own count of the compiled step (``cost_analysis``), both printed. The peak
is the data-sheet figure of the device found (H100 SXM: 989.4 TFLOP/s; H200 the same
chip) and also, for a realistic ceiling, the rate of an 8192^3 bf16 matmul measured in
the same run.

``--torch`` adds torchvision's resnet50 (channels_last, ``torch.autocast`` bf16, SGD)
measured in the same process, for a same-GPU reference.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from benchmarks import common
from cnn_jax.layers import BatchNorm
from cnn_jax.models import ResNet50

#: 2 x multiply-accumulates of one 224x224 forward pass (4.09 G) x 3 (fwd + 2 bwd).
ANALYTIC_FLOPS_PER_IMAGE = 3 * 2 * 4.089e9
#: Dense bf16 peak by device name fragment (NVIDIA data sheets, SXM parts).
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def _peak(device: Any) -> float | None:
    kind = getattr(device, "device_kind", "")
    for name, peak in PEAK_BF16.items():
        if name in kind:
            return peak
    return None


def _matmul_rate(n: int = 8192, reps: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


class _FlaxBatchNorm(nn.Module):
    """flax.linen.BatchNorm behind our ``norm(x, train=...)`` interface (a comparison)."""

    dtype: Any = None
    scale_init: Any = nn.initializers.ones

    @nn.compact
    def __call__(self, x: Any, train: bool = False) -> Any:
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            scale_init=self.scale_init,
        )(x)


def run_jax(batch: int, steps: int, warmup: int, norm: str = "ours") -> dict[str, Any]:
    """Times our ResNet-50 training step; returns images/s, compile time, FLOPs."""
    kwargs = {
        "ours": {},
        "ours_fast": {"norm": functools.partial(BatchNorm, fast_variance=True)},
        "flax": {"norm": _FlaxBatchNorm},
    }[norm]
    model = ResNet50(num_classes=1000, dtype=jnp.bfloat16, **kwargs)
    key = jax.random.key(0)
    images = jax.random.normal(key, (batch, 224, 224, 3), jnp.float32)
    labels = jax.random.randint(key, (batch,), 0, 1000)
    variables = jax.jit(lambda k: model.init(k, images[:1], train=False))(key)
    tx = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, momentum=0.9))
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    def step(state: Any, images: Any, labels: Any) -> tuple[Any, Any]:
        params, stats, opt = state

        def loss_fn(p: Any) -> Any:
            (logits, _), upd = model.apply(
                {"params": p, "batch_stats": stats}, images, train=True, mutable=["batch_stats"]
            )
            logits = logits.astype(jnp.float32)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            return jnp.mean(loss), upd["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), stats, opt), loss

    program = common.compile_jax(step, (state, images, labels), carries_state=True)
    compiled, compile_s = program.compiled, program.total_s
    cost = compiled.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0]
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    for _ in range(warmup):
        state, loss = compiled(state, images, labels)
    jax.block_until_ready(state)
    t = time.perf_counter()
    for _ in range(steps):
        state, loss = compiled(state, images, labels)
    jax.block_until_ready((state, loss))
    elapsed = time.perf_counter() - t
    return {
        "images_per_s": batch * steps / elapsed,
        "step_ms": 1e3 * elapsed / steps,
        "compile_s": compile_s,
        "xla_flops_per_image": xla_flops / batch,
        "final_loss": float(loss),
    }


def run_torch(batch: int, steps: int, warmup: int) -> dict[str, Any] | None:
    """The reference: torchvision's resnet50, channels_last + autocast bf16, same-GPU reference."""
    import sys
    import types

    import torch

    if not torch.cuda.is_available():
        return None
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import torchvision

    torch.backends.cudnn.benchmark = True
    net = torchvision.models.resnet50().cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    return {
        "images_per_s": batch * steps / elapsed,
        "step_ms": 1e3 * elapsed / steps,
        "final_loss": float(loss.detach()),
        "torch": torch.__version__,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, times the training step and prints the results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--torch", action="store_true", help="also time torchvision")
    parser.add_argument(
        "--norm",
        default="ours",
        choices=["ours", "ours_fast", "flax"],
        help="cnn_jax.layers.BatchNorm (default), the same with fast_variance=True, or "
        "flax.linen.BatchNorm",
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    common.add_setup_arguments(parser, threads=False)
    ns = parser.parse_args(argv)
    common.start(ns)  # before JAX creates its backends
    device = jax.devices()[0]
    result: dict[str, Any] = {
        "command": common.command_line(),
        "date": f"{common.utc_now()} UTC",
        "device": f"{device.platform} {getattr(device, 'device_kind', '')}",
        "jax_version": jax.__version__,
        "batch": ns.batch,
        "steps": ns.steps,
    }
    peak = _peak(device)
    result["matmul_bf16_tflops"] = _matmul_rate() / 1e12 if device.platform == "gpu" else None
    ours = run_jax(ns.batch, ns.steps, ns.warmup, ns.norm)
    result["norm"] = ns.norm
    result["jax"] = ours
    for name, flops in (
        ("analytic", ANALYTIC_FLOPS_PER_IMAGE),
        ("xla", ours["xla_flops_per_image"]),
    ):
        achieved = ours["images_per_s"] * flops
        result[f"tflops_{name}"] = achieved / 1e12
        if peak:
            result[f"mfu_{name}"] = achieved / peak
        if result["matmul_bf16_tflops"]:
            result[f"of_matmul_{name}"] = achieved / (result["matmul_bf16_tflops"] * 1e12)
    if ns.torch:
        result["torch"] = run_torch(ns.batch, ns.steps, ns.warmup)
    print(json.dumps(result, indent=2))
    if ns.out:
        with open(ns.out, "w") as f:
            json.dump(result, f, indent=2)
    print(
        f"\nResNet-50 bf16, batch {ns.batch}: {ours['images_per_s']:,.0f} images/s "
        f"({ours['step_ms']:.1f} ms/step, compile {ours['compile_s']:.1f} s); "
        f"MFU {100 * result.get('mfu_analytic', np.nan):.1f}% of the {peak and peak / 1e12} "
        f"TFLOP/s peak at {ANALYTIC_FLOPS_PER_IMAGE / 1e9:.1f} GFLOP/image"
    )


if __name__ == "__main__":
    main()
