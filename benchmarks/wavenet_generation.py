"""WaveNet generation speed on CPU: queued fast generation vs naive vs a PyTorch queue loop.

The model is the ``wavenet_fsdd`` config's (``experiments/configs/wavenet_fsdd.py``):
20 blocks with dilations 1..512 twice, 32 residual / 32 gate / 128 skip channels,
256 mu-law levels, global conditioning on 10 ids: 266,496 parameters, receptive field
2,048 samples (random weights: the speed does not depend on them). Candidates, timed in
interleaved rounds in one run (``benchmarks.common``), at batch 1 and 16:

* ``cnn_jax fast``: ``cnn_jax.models.wavenet_generate.generate`` (per-layer queues,
  one jitted ``lax.scan``), one second (8,000 samples) per call;
* ``naive``: one step of ``generate_naive`` in its steady state: the model's full causal
  convolution over the 2,048 inputs of the receptive field and a draw from the newest
  position's logits (every later sample costs the same);
* ``PyTorch queue``: the same queued algorithm written below in eager PyTorch (CPU),
  with the same weights, 500 samples per call (its cost per sample does not depend on
  the length). Before timing, its samples are checked against cnn_jax's for the same
  Gumbel noise.

Goals: fast >= 100x naive and >= 8,000 samples/s (real time at 8 kHz) at batch 1.
Command:
  python -m benchmarks.wavenet_generation            (5 rounds x 5 reps)
  python -m benchmarks.wavenet_generation --quick    (2,000 / 200 samples; 3 rounds)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import common
from benchmarks.harness.report import end_lines, environment_lines, markdown_table
from benchmarks.harness.timing import format_ms, measure


def _model():
    import jax
    import jax.numpy as jnp

    from cnn_jax.models.wavenet import WaveNet
    from experiments.configs import wavenet_fsdd

    kw = dict(wavenet_fsdd.get_config().model_kwargs)
    model = WaveNet(num_classes=10, **kw)
    v = model.init(jax.random.key(0), jnp.zeros((1, 16, 1)), label=jnp.zeros(1, jnp.int32))
    return model, v


def _torch_queue(torch, model, params):
    """The queued algorithm in eager PyTorch: returns ``generate(label, noise) -> codes``."""
    p = {
        k: {kk: torch.from_numpy(np.array(vv)) for kk, vv in v.items()}
        if isinstance(v, dict)
        else torch.from_numpy(np.array(v))
        for k, v in params.items()
    }
    n_blocks, g, s = len(model.dilations), model.gate_channels, model.skip_channels
    blocks = [p[f"block_{i}"] for i in range(n_blocks)]
    w_dil = [b["dilated_kernel"].reshape(-1, 2 * g) for b in blocks]
    w_out = [
        torch.cat([b["skip_kernel"], b["residual_kernel"]], 1) if "residual_kernel" in b
        else b["skip_kernel"] for b in blocks
    ]  # fmt: skip
    b_out = [
        torch.cat([b["skip_bias"], b["residual_bias"]]) if "residual_bias" in b
        else b["skip_bias"] for b in blocks
    ]  # fmt: skip
    w_in = p["input_kernel"]

    @torch.no_grad()
    def generate(label, noise):
        t_len, n, _ = noise.shape
        cond = [b["dilated_bias"] + b["global_embedding"][label] for b in blocks]
        queues = [torch.zeros(d, n, model.residual_channels) for d in model.dilations]
        prev = None
        code = torch.full((n,), model.quantization // 2, dtype=torch.long)
        out = torch.empty(t_len, n, dtype=torch.long)
        for t in range(t_len):
            x = p["input_bias"] + w_in[1][code]
            if prev is not None:
                x = x + w_in[0][prev]
            skips = 0
            for i, d in enumerate(model.dilations):
                q = queues[i]
                past = q[t % d].clone()
                q[t % d] = x
                h = torch.cat([past, x], 1) @ w_dil[i] + cond[i]
                z = torch.tanh(h[:, :g]) * torch.sigmoid(h[:, g:])
                o = torch.addmm(b_out[i], z, w_out[i])
                skips = skips + o[:, :s]
                if i < n_blocks - 1:
                    x = x + o[:, s:]
            h = torch.relu(torch.relu(skips) @ p["output1_kernel"] + p["output1_bias"])
            logits = h @ p["output2_kernel"] + p["output2_bias"]
            prev, code = code, torch.argmax(logits + noise[t], -1)
            out[t] = code
        return out.T

    return generate


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the comparison and prints the report."""
    settings = common.parse_args(__doc__.splitlines()[0], argv)
    used = common.set_threads(settings.threads, settings.omp_wait_policy)
    torch = common.optional_torch()
    if torch is None:
        raise SystemExit("benchmarks.wavenet_generation needs PyTorch CPU: pip install torch")
    import jax
    import jax.numpy as jnp

    from cnn_jax.models.wavenet import WaveNet
    from cnn_jax.models.wavenet_generate import _gumbel, generate

    t_start = time.perf_counter()
    t_len = 2000 if settings.quick else 8000  # cnn_jax fast
    t_torch = 200 if settings.quick else 500  # PyTorch queue
    model, v = _model()
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(v))
    rf = model.receptive_field()
    torch_gen = _torch_queue(torch, model, v["params"])
    key = jax.random.key(1)

    # Same draws: PyTorch's queue loop reproduces cnn_jax's samples for cnn_jax's noise.
    check_n, check_t = 2, 200
    lab = jnp.array([3, 7], jnp.int32)
    ours = np.asarray(generate(model, v, key, check_t, batch_size=check_n, label=lab))
    noise = torch.from_numpy(np.array(_gumbel(key, check_t, check_n, model.quantization)))
    theirs = torch_gen(torch.from_numpy(np.array(lab)).long(), noise).numpy()
    agree = float(np.mean(ours == theirs))
    if agree < 0.95:
        raise SystemExit(f"PyTorch queue and cnn_jax disagree on {1 - agree:.1%} of samples")

    rows, rates = [], {}
    for n in (1, 16):
        label = jnp.arange(n, dtype=jnp.int32) % 10
        fast = jax.jit(
            lambda k, label=label, n=n: generate(model, v, k, t_len, batch_size=n, label=label)
        )
        window = jax.nn.one_hot(jnp.full((n, rf), 128), model.quantization)
        g_t = _gumbel(key, 1, n, model.quantization)[0]

        @jax.jit
        def naive_step(x, label=label, g_t=g_t):
            logits, _ = model.apply(v, x, label, None, method=WaveNet.logits_from_inputs)
            return jnp.argmax(logits[:, -1] + g_t, -1)

        tnoise = torch.from_numpy(np.array(_gumbel(key, t_torch, n, model.quantization)))
        tlabel = torch.from_numpy(np.array(label)).long()
        timings = measure(
            {
                "cnn_jax fast (queues, lax.scan)": lambda f=fast: f(key).block_until_ready(),
                "naive (full causal conv per sample)": lambda f=naive_step, w=window: f(
                    w
                ).block_until_ready(),
                "PyTorch queue (eager CPU)": lambda a=tlabel, b=tnoise: torch_gen(a, b),
            },
            settings.rounds,
            settings.reps,
            settings.order,
        )
        per_call = {
            "naive (full causal conv per sample)": n,
            "PyTorch queue (eager CPU)": n * t_torch,
        }
        for name, tm in timings.items():
            samples = per_call.get(name, n * t_len)
            rate = samples / tm.median
            rates[(n, name)] = rate
            lo = samples / max(tm.round_medians())
            hi = samples / min(tm.round_medians())
            rows.append([str(n), name, format_ms(tm.median), f"{rate:,.0f} ({lo:,.0f}-{hi:,.0f})"])
    fast_name, naive_name = "cnn_jax fast (queues, lax.scan)", "naive (full causal conv per sample)"
    torch_name = "PyTorch queue (eager CPU)"
    print("# WaveNet generation on CPU (the wavenet_fsdd model)\n")
    print("\n".join(environment_lines(settings, used)))
    print(
        f"- model: {n_params:,} parameters, {len(model.dilations)} blocks, receptive field "
        f"{rf} samples; {t_len} samples per fast call, {t_torch} per PyTorch call"
    )
    print(
        f"- PyTorch queue vs cnn_jax, same noise: {agree:.1%} of {check_n}x{check_t} samples equal"
    )
    print()
    print(markdown_table(["batch", "candidate", "ms per call", "samples/s (round range)"], rows))
    print()
    for n in (1, 16):
        f = rates[(n, fast_name)]
        print(
            f"- batch {n}: fast / naive = {f / rates[(n, naive_name)]:,.0f}x, "
            f"fast / PyTorch queue = {f / rates[(n, torch_name)]:.1f}x, {f:,.0f} samples/s"
        )
    ok = rates[(1, fast_name)] >= 8000 and rates[(1, fast_name)] >= 100 * rates[(1, naive_name)]
    print(f"- goals (>= 100x naive and >= 8,000 samples/s at batch 1): {'met' if ok else 'MISSED'}")
    print()
    print("\n".join(end_lines(t_start)))


if __name__ == "__main__":
    main(sys.argv[1:])
