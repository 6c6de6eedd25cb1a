"""Winograd F(4x4, 3x3) against XLA:CPU's direct convolution, VGG-19's layers, on the CPU.

For each 3x3 convolution of VGG-19 up to ``conv5_1`` at a 512x512 input (batch 1,
float32; ``--quick``: 128x128), timed in interleaved rounds (``benchmarks.common``):

* ``lax``: ``cnn_jax.style.fast_vgg.conv3x3`` (``lax.conv_general_dilated``, and its
  input gradient as a canonical convolution with the prepared transposed kernel);
* ``winograd``: ``cnn_jax.style.fast_vgg.conv3x3_winograd`` (``cnn_jax.ops.winograd``
  with the kernels transformed once, outside the timed call).

Both ways: the forward convolution alone, and forward plus the input gradient (what
``cnn_jax.style.stylize`` computes per loss evaluation; the kernel gradient is not
needed there and XLA removes it). The ratio winograd / lax chose
``fast_vgg.WINOGRAD_MIN_CHANNELS`` and ``WINOGRAD_MAX_PIXELS``. The largest deviation
from the direct convolution, relative to its largest output, is printed per layer.

Then the whole loss ``stylize`` differentiates (Gatys et al.'s: content ``relu4_2``,
style ``relu1_1`` ... ``relu5_1``, average pooling, VGG-19 with flax's initialization),
its value and image gradient at the same size, jit-compiled, with
``fast_vgg.prepare(winograd=False)`` against ``winograd=True``; and the gradients'
relative L2 distance from a float64 computation at 128x128 (the float64 one alone is
slow at 512x512).

Command: ``python -m benchmarks.winograd_cpu`` (``--quick`` for a smoke run,
``--only loss`` for the whole loss alone).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import common
from benchmarks.harness.report import end_lines, environment_lines, markdown_table
from benchmarks.harness.timing import format_ms, format_ratio, measure, ratio

#: VGG-19's 3x3 convolutions up to conv5_1: (name, input side at a 512 input, C_in, C_out).
LAYERS = (
    ("conv1_2", 512, 64, 64),
    ("conv2_1", 256, 64, 128),
    ("conv2_2", 256, 128, 128),
    ("conv3_1", 128, 128, 256),
    ("conv3_2", 128, 256, 256),
    ("conv4_1", 64, 256, 512),
    ("conv4_2", 64, 512, 512),
    ("conv5_1", 32, 512, 512),
)


def _with_input_grad(conv, x, g, *args):
    """The convolution's output summed and its input gradient for ``g``, summed."""
    import jax

    y, vjp = jax.vjp(lambda x: conv(x, *args), x)
    return y.sum() + vjp(g)[0].sum()


def _call(fn, x, g, args):
    """``fn(x, *args)``, or ``fn(x, g, *args)`` with a cotangent, waited for."""
    import jax

    return jax.block_until_ready(fn(x, *args) if g is None else fn(x, g, *args))


def _gatys_loss(size: int, winograd: bool, dtype=np.float32):
    """``(image, jitted value-and-gradient)`` of ``cnn_jax.style.gatys_loss`` at ``size``."""
    import jax
    import jax.numpy as jnp

    from cnn_jax import style

    model = style.VGGFeatures(layers=("relu5_1",))
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    rng = np.random.default_rng(0)
    content, image = (rng.random((size, size, 3)).astype(dtype) for _ in range(2))
    loss = style.gatys_loss(params, content, content, winograd=winograd)
    return jnp.asarray(image), jax.jit(jax.value_and_grad(loss))


def _whole_loss(settings, size: int) -> list[list[str]]:
    """Times the loss both ways; the gradients' distance from float64 at 128x128."""
    import jax

    image, direct = _gatys_loss(size, False)
    _, wino = _gatys_loss(size, True)
    timed = measure(
        {
            "lax": lambda: jax.block_until_ready(direct(image)),
            "winograd": lambda: jax.block_until_ready(wino(image)),
        },
        settings.rounds,
        settings.reps,
        settings.order,
    )
    side = min(size, 128)
    with jax.enable_x64(True):
        image64, exact = _gatys_loss(side, False, np.float64)
        g64 = np.asarray(exact(image64)[1], np.float64)
    devs = []
    for winograd in (False, True):
        image32, fn = _gatys_loss(side, winograd)
        g = np.asarray(fn(image32)[1], np.float64)
        devs.append(np.linalg.norm(g - g64) / np.linalg.norm(g64))
    return [
        [
            f"Gatys loss {size}x{size}",
            "value + image gradient",
            format_ms(timed["lax"].median),
            format_ms(timed["winograd"].median),
            format_ratio(ratio(timed["winograd"], timed["lax"])),
            f"gradient vs float64 at {side}x{side}: {devs[0]:.1e} (lax), {devs[1]:.1e} (winograd)",
        ]
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Times both convolutions per layer and prints the report."""
    settings = common.parse_args(__doc__.splitlines()[0], argv)
    used = common.set_threads(settings.threads, settings.omp_wait_policy)
    import jax
    import jax.numpy as jnp

    from cnn_jax import ops
    from cnn_jax.style import fast_vgg

    t_start = time.perf_counter()
    scale = 4 if settings.quick else 1
    layers = LAYERS[:4] if settings.quick else LAYERS
    rng = np.random.default_rng(0)
    rows = []
    for name, side, c_in, c_out in layers:
        if settings.only and settings.only not in name:
            continue
        side //= scale
        x = jnp.asarray(rng.standard_normal((1, side, side, c_in)), jnp.float32)
        k = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)) / np.sqrt(9 * c_in), jnp.float32)
        g = jnp.asarray(rng.standard_normal((1, side, side, c_out)), jnp.float32)
        kt = fast_vgg.transpose_kernel(k)
        args = {"lax": (k, kt), "winograd": (k, ops.winograd_kernel(k), ops.winograd_kernel(kt))}
        fwd = {"lax": jax.jit(fast_vgg.conv3x3), "winograd": jax.jit(fast_vgg.conv3x3_winograd)}
        both = {n: jax.jit(functools.partial(_with_input_grad, f)) for n, f in fwd.items()}
        want = np.asarray(fwd["lax"](x, *args["lax"]))
        got = np.asarray(fwd["winograd"](x, *args["winograd"]))
        err = float(np.abs(got - want).max() / np.abs(want).max())
        for what, fns, cotangent in (("forward", fwd, None), ("forward + input grad", both, g)):
            timed = measure(
                {n: functools.partial(_call, f, x, cotangent, args[n]) for n, f in fns.items()},
                settings.rounds,
                settings.reps,
                settings.order,
            )
            r = ratio(timed["winograd"], timed["lax"])
            rows.append(
                [
                    f"{name} {side}x{side} {c_in}->{c_out}",
                    what,
                    format_ms(timed["lax"].median),
                    format_ms(timed["winograd"].median),
                    format_ratio(r),
                    f"{err:.1e}",
                ]
            )
    if not settings.only or settings.only == "loss":
        rows += _whole_loss(settings, 512 // scale)
    print("# Winograd F(4x4, 3x3) against the direct convolution, VGG-19's layers (CPU)\n")
    print("\n".join(environment_lines(settings, used)))
    print()
    header = ["layer (batch 1)", "pass", "lax ms", "winograd ms", "winograd / lax", "max dev."]
    print(markdown_table(header, rows))
    print()
    print("\n".join(end_lines(t_start)))


if __name__ == "__main__":
    main(sys.argv[1:])
