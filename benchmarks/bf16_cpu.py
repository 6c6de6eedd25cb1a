"""bfloat16 against float32 on the CPU, XLA:CPU and PyTorch, airbench94's convolutions.

What a CIFAR-10 speed run on this CPU can gain from bfloat16 in each framework. For
every 3x3 ``'SAME'`` convolution of airbench94 (``benchmarks.airbench``: widths 64, 256,
256 after a 2x2 whitening layer; batch 256 or ``--batch``, ``--quick``: batch 16 and two
layers), timed in interleaved rounds (``benchmarks.common``):

* ``conv``: forward and both gradients (input and kernel) of the convolution, the work
  of one training step, as ``jax.value_and_grad`` of ``sum(conv(x, k) * g)`` (jitted;
  ``lax.conv_general_dilated``) and as PyTorch's ``conv2d`` (channels-last) with
  ``backward(g)``;
* ``matmul``: one matrix product of the layer's im2col shape
  (``(N * H * W, 9 * C_in) @ (9 * C_in, C_out)``, the forward's multiply-adds), as
  ``jnp.matmul`` (bfloat16 inputs multiplied with float32 accumulation and output,
  ``preferred_element_type``) and ``torch.matmul`` (which accumulates bfloat16 products
  in float32 too but returns bfloat16).

Each in float32 and in bfloat16 (inputs, parameters and cotangent in bfloat16). The table
gives the times and, per framework, bfloat16's time over float32's (below 1 where the
bfloat16 path is faster), and how far the bfloat16 gradients are from XLA:CPU's float32
ones (largest deviation over the input and kernel gradients, relative to the largest
value); PyTorch's float32 gradients are checked against XLA:CPU's the same way. A second
table sets the two frameworks' float32 ``conv`` times side by side, layer by layer and
summed over the layers (XLA:CPU's time over PyTorch's: above 1 where XLA:CPU is slower).
The CPU's bfloat16 instructions (``avx512_bf16``, ``amx_bf16``) are printed with the
machine.

Command: ``python -m benchmarks.bf16_cpu [--batch=256]`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import common
from benchmarks.airbench import Recipe
from benchmarks.harness.report import end_lines, environment_lines, markdown_table, optional_torch
from benchmarks.harness.timing import Timing, format_ms, format_ratio, measure, ratio


def airbench_layers(recipe: Recipe | None = None) -> list[tuple[str, int, int, int]]:
    """airbench94's 3x3 convolutions as ``(name, side, C_in, C_out)``, from its recipe.

    The whitening layer (``k x k`` VALID, ``2 * 3 * k^2`` channels) leaves a
    ``33 - k`` pixel side; in each group ``conv1`` runs at that side and ``conv2``
    after a 2x2 max pool.
    """
    r = recipe or Recipe()
    side, c_in, layers = 33 - r.whiten_kernel_size, 6 * r.whiten_kernel_size**2, []
    for i, width in enumerate(r.widths, 1):
        layers.append((f"group{i}.conv1", side, c_in, width))
        side //= 2
        layers.append((f"group{i}.conv2", side, width, width))
        c_in = width
    return layers


def bf16_cpu_flags() -> str:
    """The CPU's bfloat16 instruction flags from ``/proc/cpuinfo`` (or ``unknown``)."""
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return "unknown"
    found = sorted(w for w in words if w in ("avx512_bf16", "amx_bf16", "avx_ne_convert"))
    return ", ".join(found) or "none"


def _jax_fns(dtype):
    """Jitted ``conv`` (forward + both gradients) and ``matmul`` for ``dtype``.

    ``conv`` returns the loss with the gradients: the loss is linear in the
    convolution's output, so ``jax.grad`` alone would let XLA drop the forward
    convolution and time two convolutions against PyTorch's three.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    def loss(x, k, g):
        y = lax.conv_general_dilated(
            x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.sum(y.astype(jnp.float32) * g.astype(jnp.float32))

    conv = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    matmul = jax.jit(functools.partial(jnp.matmul, preferred_element_type=jnp.float32))
    return conv, matmul


def _waited(fn, *args):
    import jax

    return jax.block_until_ready(fn(*args))


def _torch_conv(torch, x, k, g):
    x = x.detach().requires_grad_()
    k = k.detach().requires_grad_()
    torch.nn.functional.conv2d(x, k, padding=1).backward(g)
    return x.grad, k.grad


def _case(rng, batch, side, c_in, c_out):
    """float32 arrays: input, kernel (HWIO), cotangent, im2col matrix, its weight."""
    x = rng.standard_normal((batch, side, side, c_in)).astype(np.float32)
    k = (rng.standard_normal((3, 3, c_in, c_out)) / np.sqrt(9 * c_in)).astype(np.float32)
    g = rng.standard_normal((batch, side, side, c_out)).astype(np.float32)
    a = rng.standard_normal((batch * side * side, 9 * c_in)).astype(np.float32)
    return x, k, g, a, k.reshape(9 * c_in, c_out)


def _candidates(x, k, g, a, b):
    """Name -> callable for both frameworks, both dtypes, both computations."""
    import jax.numpy as jnp

    torch = optional_torch()
    out = {}
    for dt_name, jdt in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        conv, matmul = _jax_fns(jdt)
        jx, jk, jg, ja, jb = (jnp.asarray(v, jdt) for v in (x, k, g, a, b))
        out[f"jax conv {dt_name}"] = functools.partial(_waited, conv, jx, jk, jg)
        out[f"jax matmul {dt_name}"] = functools.partial(_waited, matmul, ja, jb)
        if torch is None:
            continue
        tdt = getattr(torch, dt_name)
        tx = torch.from_numpy(x).permute(0, 3, 1, 2).to(tdt)  # NCHW view of NHWC memory
        tk = torch.from_numpy(k).permute(3, 2, 0, 1).contiguous().to(tdt)
        tk = tk.to(memory_format=torch.channels_last)
        tg = torch.from_numpy(g).permute(0, 3, 1, 2).to(tdt)
        ta, tb = torch.from_numpy(a).to(tdt), torch.from_numpy(b).to(tdt)
        out[f"torch conv {dt_name}"] = functools.partial(_torch_conv, torch, tx, tk, tg)
        out[f"torch matmul {dt_name}"] = functools.partial(torch.matmul, ta, tb)
    return out


def _grads(fns, fw, dtype):
    """``(dx NHWC, dk HWIO)`` of one ``conv`` candidate as float64 numpy arrays."""
    if fw == "torch":
        dx, dk = fns[f"{fw} conv {dtype}"]()
        dx, dk = dx.float().permute(0, 2, 3, 1), dk.float().permute(2, 3, 1, 0)
    else:
        _, (dx, dk) = fns[f"{fw} conv {dtype}"]()
    return tuple(np.asarray(v, np.float64) for v in (dx, dk))


def _rel_dev(a, b) -> float:
    """Largest of ``max |a - b| / max |b|`` over the pairs of arrays."""
    return max(float(np.abs(x - y).max() / np.abs(y).max()) for x, y in zip(a, b, strict=True))


def framework_rows(timings: Sequence[tuple[str, Timing, Timing]]) -> list[list[str]]:
    """Rows of the float32 framework table from ``(layer, XLA:CPU, PyTorch)`` timings.

    One row per layer with the ratio of medians and its per-round range, then (for more
    than one layer) the sums of the medians; the last column is XLA:CPU's time over
    PyTorch's.
    """
    rows = [
        [name, format_ms(j.median), format_ms(t.median), format_ratio(ratio(j, t))]
        for name, j, t in timings
    ]
    if len(timings) > 1:
        j, t = sum(r[1].median for r in timings), sum(r[2].median for r in timings)
        rows.append([f"sum of {len(timings)} layers", format_ms(j), format_ms(t), f"{j / t:.2f}"])
    return rows


def _parse(argv: Sequence[str] | None) -> tuple[common.Settings, int | None]:
    """The shared settings and ``--batch`` (``None``: 256, or 16 with ``--quick``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--batch", type=int, default=None, help="images per call (default 256; 16 with --quick)"
    )
    extra, rest = parser.parse_known_args(argv)
    if extra.batch is not None and extra.batch < 1:
        parser.error(f"--batch (={extra.batch}) must be positive")
    settings = common.parse_args(__doc__.splitlines()[0], rest, parents=[parser])
    return settings, extra.batch


def main(argv: Sequence[str] | None = None) -> None:
    """Times both dtypes in both frameworks per layer and prints the report."""
    settings, batch = _parse(argv)
    used = common.set_threads(settings.threads, settings.omp_wait_policy)
    t_start = time.perf_counter()
    if batch is None:
        batch = 16 if settings.quick else 256
    layers = airbench_layers()
    layers = layers[1:3] if settings.quick else layers
    rng = np.random.default_rng(0)
    rows, agree, side_by_side = [], [], []
    for name, side, c_in, c_out in layers:
        if settings.only and settings.only not in name:
            continue
        fns = _candidates(*_case(rng, batch, side, c_in, c_out))
        timed = measure(fns, settings.rounds, settings.reps, settings.order)
        ref = _grads(fns, "jax", "float32")
        dev = {
            fw: _rel_dev(_grads(fns, fw, "bfloat16"), ref)
            for fw in ("jax", "torch")
            if f"{fw} conv float32" in fns
        }
        if "torch" in dev:
            agree.append(_rel_dev(_grads(fns, "torch", "float32"), ref))
            side_by_side.append((name, timed["jax conv float32"], timed["torch conv float32"]))
        for what in ("conv", "matmul"):
            for fw in ("jax", "torch"):
                f32, b16 = f"{fw} {what} float32", f"{fw} {what} bfloat16"
                if f32 not in timed:
                    continue
                rows.append(
                    [
                        f"{name} {side}x{side} {c_in}->{c_out}",
                        "fwd + both grads" if what == "conv" else "im2col matmul (fwd)",
                        "XLA:CPU" if fw == "jax" else "PyTorch",
                        format_ms(timed[f32].median),
                        format_ms(timed[b16].median),
                        format_ratio(ratio(timed[b16], timed[f32])),
                        f"{dev[fw]:.1e}" if what == "conv" else "",
                    ]
                )
    print(f"# bfloat16 against float32 on the CPU, airbench94's convolutions, batch {batch}\n")
    print("\n".join(environment_lines(settings, used)))
    print(f"- CPU bfloat16 instructions: {bf16_cpu_flags()}")
    print()
    header = ["layer", "computation", "framework", "float32 ms", "bfloat16 ms", "bf16 / f32"]
    header += ["bf16 grads' dev."]
    print(markdown_table(header, rows))
    print()
    if agree:
        print(
            "float32 gradients, PyTorch against XLA:CPU: largest deviation "
            f"{max(agree):.1e} of the largest value"
        )
        print()
        print("## float32 fwd + both grads, XLA:CPU against PyTorch\n")
        header = ["layer", "XLA:CPU ms", "PyTorch ms", "XLA:CPU / PyTorch"]
        print(markdown_table(header, framework_rows(side_by_side)))
    print()
    print("\n".join(end_lines(t_start)))


if __name__ == "__main__":
    main(sys.argv[1:])
