"""Training-step time of the four ``*_digits`` segmentation models, interleaved in one run.

Command (from the repository root, in the venv):
  python -m benchmarks.segmentation_step [--rounds 3] [--steps 5] [--batch 16]

Each model of ``experiments/configs/{unet,segnet,dilated,fcn}_digits.py`` gets the same
jitted step as the training loop's (forward, per-pixel cross-entropy, backward, Adam) on
a random ``(batch, 64, 64, 1)`` batch; after compiling all four, every round times
``--steps`` steps of each model in turn, so that a change of the machine's load hits
them alike. Prints, per model, the median over the rounds of the mean step time and
the ratio to U-Net's, as a markdown table, plus the parameters and forward GFLOPs per
image (``cnn_jax.models.flops``, which counts a transposed convolution as the
convolution of its zero-dilated input).
"""

from __future__ import annotations

import argparse
import time

import cnn_jax


def main() -> None:
    """Runs the benchmark and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    cnn_jax.apply_xla_cpu_defaults()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from cnn_jax import models
    from cnn_jax.models.flops import model_flops
    from cnn_jax.train.losses_dense import pixel_cross_entropy
    from experiments.configs import dilated_digits, fcn_digits, segnet_digits, unet_digits

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((args.batch, 64, 64, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 11, (args.batch, 64, 64)))
    cases = {}
    for name, mod in (
        ("U-Net", unet_digits),
        ("SegNet", segnet_digits),
        ("dilated", dilated_digits),
        ("FCN-8s", fcn_digits),
    ):
        c = mod.get_config("cpu")
        model = models.get_model(c.model, num_classes=11, **c.model_kwargs)
        keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        variables = model.init(keys, x)
        params = variables["params"]
        rest = {k: v for k, v in variables.items() if k != "params"}
        tx = optax.adam(1e-3)

        def step(p, s, model=model, rest=rest, tx=tx):
            def loss(p):
                (out, _), _ = model.apply(
                    {"params": p, **rest},
                    x,
                    train=True,
                    rngs={"dropout": jax.random.key(2)},
                    mutable=list(rest),
                )
                return pixel_cross_entropy(out, y, reduction="mean")

            value, grads = jax.value_and_grad(loss)(p)
            updates, s = tx.update(grads, s, p)
            return optax.apply_updates(p, updates), s, value

        fn = jax.jit(step)
        state = (params, tx.init(params))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*state))
        compile_s = time.perf_counter() - t0
        n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
        flops = model_flops(c.model, (64, 64, 1), num_classes=11, **c.model_kwargs)
        cases[name] = dict(fn=fn, state=state, times=[], params=n_params, flops=flops, c=compile_s)
    for _ in range(args.rounds):
        for case in cases.values():
            p, s = case["state"]
            t0 = time.perf_counter()
            for _ in range(args.steps):
                p, s, value = case["fn"](p, s)
            jax.block_until_ready(value)
            case["times"].append((time.perf_counter() - t0) / args.steps)
            case["state"] = (p, s)
    base = float(np.median(cases["U-Net"]["times"]))
    print(f"| model | parameters | GFLOPs / image | ms / step (batch {args.batch}) | x U-Net |")
    print("|---|---|---|---|---|")
    for name, case in cases.items():
        ms = 1000 * float(np.median(case["times"]))
        print(
            f"| {name} | {case['params']:,} | {case['flops'] / 1e9:.3f} | {ms:.0f} "
            f"({1000 * min(case['times']):.0f}-{1000 * max(case['times']):.0f}) | "
            f"{ms / 1000 / base:.2f} |"
        )


if __name__ == "__main__":
    main()
