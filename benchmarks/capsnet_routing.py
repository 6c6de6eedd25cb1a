"""CapsNet on CPU: dynamic routing and a training step, cnn_jax vs PyTorch vs a Python loop.

Two comparisons, each timed interleaved in the same run (``benchmarks.common``):

* routing: ``cnn_jax.layers.dynamic_routing`` (one jitted ``lax.scan``) on ``u_hat`` of
  shape ``(batch, 1152, 10, 16)`` with 3 iterations, against the same procedure in
  PyTorch (eager, written below) and against a naive per-iteration Python loop over
  un-jitted ``jax.numpy`` calls;
* training step: ``cnn_jax.models.CapsNet`` with the margin + reconstruction loss and
  Adam (forward, backward, update) against the same network in PyTorch (written below:
  Conv1 256@9x9, PrimaryCaps 32x8D 9x9/2, DigitCaps 10x16D with 3 routing iterations
  whose earlier couplings carry no gradient, decoder 512-1024-784).

Goal: cnn_jax's training step at most 0.7x PyTorch's time. Command:
  python -m benchmarks.capsnet_routing            (batch 32, 5 rounds x 5 reps)
  python -m benchmarks.capsnet_routing --quick    (batch 8, 3 rounds)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks import common
from benchmarks.harness.programs import compile_jax
from benchmarks.harness.report import end_lines, environment_lines, markdown_table
from benchmarks.harness.timing import format_ms, format_ratio, measure, ratio


def _torch_capsnet(torch):
    nn, F = torch.nn, torch.nn.functional

    def squash(s):
        sq = (s * s).sum(-1, keepdim=True)
        return sq / (1 + sq) * s * torch.rsqrt(sq + 1e-7)

    def routing(u_hat, r):
        b = torch.zeros(u_hat.shape[:3])
        u_stop = u_hat.detach()
        for _ in range(r - 1):
            c = F.softmax(b, dim=-1)
            v = squash(torch.einsum("bij,bijd->bjd", c, u_stop))
            b = b + torch.einsum("bijd,bjd->bij", u_stop, v)
        c = F.softmax(b, dim=-1)
        return squash(torch.einsum("bij,bijd->bjd", c, u_hat))

    class CapsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 256, 9)
            self.primary = nn.Conv2d(256, 256, 9, stride=2)
            self.w = nn.Parameter(0.01 * torch.randn(1152, 10, 16, 8))
            self.dec = nn.Sequential(
                nn.Linear(160, 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(),
                nn.Linear(1024, 784), nn.Sigmoid(),
            )  # fmt: skip

        def forward(self, x, label):
            h = F.relu(self.conv1(x))
            p = self.primary(h)  # (N, 256, 6, 6) -> capsules ordered by position then map
            n = p.shape[0]
            u = squash(p.permute(0, 2, 3, 1).reshape(n, -1, 8))
            u_hat = torch.einsum("nid,ijed->nije", u, self.w)
            v = routing(u_hat, 3)
            lengths = torch.sqrt((v * v).sum(-1) + 1e-7)
            t = F.one_hot(label, 10).float()
            margin = t * F.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * F.relu(lengths - 0.1) ** 2
            rec = self.dec((v * t[..., None]).reshape(n, -1))
            rec_loss = ((rec - x.reshape(n, -1)) ** 2).sum(-1)
            return (margin.sum(-1) + 0.0005 * rec_loss).mean()

    return CapsNet, routing


def _jax_parts(batch: int):
    import jax
    import jax.numpy as jnp
    import optax

    from cnn_jax.layers.capsules import dynamic_routing, squash
    from cnn_jax.models.capsnet import CapsNet
    from cnn_jax.train.losses_capsule import capsule_loss

    model = CapsNet()
    x = jax.random.uniform(jax.random.key(0), (batch, 28, 28, 1))
    y = jnp.arange(batch) % 10
    params = model.init(jax.random.key(1), x)["params"]
    tx = optax.adam(1e-3)

    def step(state, x, y):
        params, opt = state

        def loss_fn(p):
            out, f = model.apply({"params": p}, x, label=y)
            return jnp.mean(capsule_loss(out, f, {"image": x, "label": y})[0])

        loss, g = jax.value_and_grad(loss_fn)(params)
        upd, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, upd), opt), loss

    def naive_routing(u_hat, r):
        b = jnp.zeros(u_hat.shape[:3])
        for _ in range(r - 1):
            c = jax.nn.softmax(b, axis=-1)
            v = squash(jnp.einsum("bij,bijd->bjd", c, u_hat))
            b = b + jnp.einsum("bijd,bjd->bij", u_hat, v)
        c = jax.nn.softmax(b, axis=-1)
        return squash(jnp.einsum("bij,bijd->bjd", c, u_hat))

    state = (params, tx.init(params))
    return step, state, x, y, dynamic_routing, naive_routing


def main(argv: Sequence[str] | None = None) -> None:
    """Runs both comparisons and prints the report."""
    settings = common.parse_args(__doc__.splitlines()[0], argv, order="block")
    used = common.set_threads(settings.threads, settings.omp_wait_policy)
    torch = common.optional_torch()
    if torch is None:
        raise SystemExit("benchmarks.capsnet_routing needs PyTorch CPU: pip install -e '.[torch]'")
    import jax
    import jax.numpy as jnp

    batch = 8 if settings.quick else 32
    t_start = time.perf_counter()
    step, state, x, y, routing, naive = _jax_parts(batch)
    u_np = np.random.default_rng(0).normal(size=(batch, 1152, 10, 16)).astype(np.float32) * 0.05
    u_j = jnp.asarray(u_np)
    routing_prog = compile_jax(lambda u: routing(u, 3), [u_j])
    step_prog = compile_jax(step, [state, x, y], carries_state=True)
    torch.manual_seed(0)
    TorchCapsNet, torch_routing = _torch_capsnet(torch)
    net = TorchCapsNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(np.array(y)).long()
    u_t = torch.from_numpy(u_np)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = net(xt, yt)
        loss.backward()
        opt.step()
        return loss.item()

    def torch_route():
        with torch.no_grad():
            return torch_routing(u_t, 3).sum().item()

    np.testing.assert_allclose(
        np.asarray(routing_prog()), torch_routing(u_t, 3).numpy(), rtol=1e-3, atol=1e-5
    )
    routes = measure(
        {
            "PyTorch (eager)": torch_route,
            "cnn_jax dynamic_routing (jit, scan)": routing_prog,
            "naive Python loop (un-jitted jnp)": lambda: jax.block_until_ready(naive(u_j, 3)),
        },
        settings.rounds,
        settings.reps,
        settings.order,
    )
    steps = measure(
        {"PyTorch (eager)": torch_step, "cnn_jax CapsNet (jit)": step_prog},
        settings.rounds,
        settings.reps,
        settings.order,
    )
    rows = []
    for what, timings in (("routing, 3 iterations", routes), ("training step", steps)):
        ref = timings["PyTorch (eager)"]
        for name, t in timings.items():
            rows.append([what, name, format_ms(t.median), format_ratio(ratio(t, ref))])
    print(f"# CapsNet on CPU: routing and training step (batch {batch})\n")
    print("\n".join(environment_lines(settings, used)))
    compile_s = (routing_prog.compile_s, step_prog.compile_s)
    print("- cnn_jax compile: routing {:.1f} s, step {:.1f} s".format(*compile_s))
    print()
    print(markdown_table(["what", "candidate", "ms", "x PyTorch (round range)"], rows))
    print()
    print("\n".join(end_lines(t_start)))


if __name__ == "__main__":
    main(sys.argv[1:])
