r"""Cost of an inception net with and without its 1x1 reductions: parameters, MACs, step time.

Example:
  python -m experiments.claims_bottleneck --out=runs/claims_bottleneck

Builds ``cnn_jax.models.InceptionCifar(reduce=True)`` and ``(reduce=False)`` (the models
of ``experiments/configs/study_bottleneck.py``), counts their parameters and
multiply-accumulates per 32x32x3 image (``cnn_jax.models.flops.count_macs``), and times
one jitted training step of each (forward, backward, SGD update, batch ``--batch``, in
training mode) and one evaluation-mode forward pass, in interleaved rounds
(``benchmarks.harness.timing.measure``, ``order='block'``) so that load from other
processes hits both alike. Writes ``bottleneck.json`` and ``bottleneck.md`` into
``--out``; the ratios are medians of the samples, with the load average seen.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """The command's flags, defined when it runs (importing the module defines none)."""
    flags.DEFINE_string("out", None, "Where bottleneck.json and bottleneck.md go.")
    flags.DEFINE_integer("batch", 32, "Batch size of the timed steps.")
    flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
    flags.DEFINE_integer("reps", 3, "Samples per model per round.")
    flags.mark_flags_as_required(["out"])


def programs(reduce: bool, batch: int, seed: int = 0) -> tuple[dict, object, object]:
    """``(counts, train_step, infer)`` of ``InceptionCifar(reduce=reduce)``.

    ``train_step()`` and ``infer()`` run one jitted step on fixed random data and wait
    for it; ``counts`` holds ``parameters`` and ``macs`` (per image).
    """
    import jax
    import optax

    from cnn_jax.models import InceptionCifar
    from cnn_jax.models.flops import count_macs

    model = InceptionCifar(reduce=reduce)
    key = jax.random.PRNGKey(seed)
    x = jax.random.normal(key, (batch, 32, 32, 3))
    y = jax.random.randint(key, (batch,), 0, 10)
    variables = model.init(key, x[:1], train=False)
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    tx = optax.sgd(0.01, momentum=0.9)
    opt = tx.init(params)
    counts = {
        "parameters": int(sum(p.size for p in jax.tree_util.tree_leaves(params))),
        "macs": int(count_macs(model, (32, 32, 3))),
    }

    def loss_fn(p, s):
        (logits, _), upd = model.apply(
            {"params": p, "batch_stats": s},
            x,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, upd["batch_stats"]

    @jax.jit
    def step(p, s, o):
        (loss, s), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), s, o, loss

    @jax.jit
    def forward(p, s):
        logits, _ = model.apply({"params": p, "batch_stats": s}, x, train=False)
        return logits

    def train_step():
        jax.block_until_ready(step(params, stats, opt))

    def infer():
        jax.block_until_ready(forward(params, stats))

    return counts, train_step, infer


def run(batch: int, rounds: int, reps: int) -> dict:
    """Counts and interleaved timings of both models; ratios without / with."""
    from benchmarks.harness.timing import measure

    load = os.getloadavg()
    res: dict = {"batch": batch, "rounds": rounds, "reps": reps, "models": {}}
    progs = {}
    for name, reduce in (("with_1x1", True), ("without_1x1", False)):
        counts, train_step, infer = programs(reduce, batch)
        res["models"][name] = dict(counts)
        progs[name] = (train_step, infer)
    for mode, i in (("train_step", 0), ("infer", 1)):
        timing = measure({n: p[i] for n, p in progs.items()}, rounds, reps, order="block")
        for name, t in timing.items():
            res["models"][name][f"{mode}_ms"] = 1e3 * t.median
        res[f"{mode}_ratio"] = timing["without_1x1"].median / timing["with_1x1"].median
    m = res["models"]
    res["parameter_ratio"] = m["without_1x1"]["parameters"] / m["with_1x1"]["parameters"]
    res["mac_ratio"] = m["without_1x1"]["macs"] / m["with_1x1"]["macs"]
    res["load_average"] = {"start": list(load), "end": list(os.getloadavg())}
    return res


def table(res: dict) -> str:
    """The markdown table of :func:`run`'s result."""
    b = res["batch"]
    lines = [
        f"| InceptionCifar | parameters | MACs per image | training step, batch {b} (ms) "
        f"| forward, batch {b} (ms) |",
        "|---|---|---|---|---|",
    ]
    for name, m in res["models"].items():
        lines.append(
            f"| {name} | {m['parameters']:,} | {m['macs'] / 1e6:.1f} M | "
            f"{m['train_step_ms']:.1f} | {m['infer_ms']:.1f} |"
        )
    lines.append(
        f"| without / with | {res['parameter_ratio']:.2f}x | {res['mac_ratio']:.2f}x | "
        f"{res['train_step_ratio']:.2f}x | {res['infer_ratio']:.2f}x |"
    )
    la = res["load_average"]
    lines += ["", f"Load average (1 min) {la['start'][0]:.1f} at the start, {la['end'][0]:.1f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """Measures, writes the JSON and the table."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import cnn_jax

    cnn_jax.apply_xla_cpu_defaults()
    res = run(FLAGS.batch, FLAGS.rounds, FLAGS.reps)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "bottleneck.json"), "w") as f:
        json.dump(res, f, indent=1)
    text = table(res)
    with open(os.path.join(FLAGS.out, "bottleneck.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
