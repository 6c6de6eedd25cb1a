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
  python -m benchmarks.capsnet_routing --pieces   (where the step's time goes)

``--pieces`` times each piece of the step alone, forward and backward with a random
cotangent, cnn_jax (jitted) against PyTorch: Conv1 (kernel gradient; the images need
none), PrimaryCaps' convolution (input and kernel gradients; forward alone too), the
prediction vectors ``u_hat = W u`` (both gradients), routing (gradient to ``u_hat``)
and the decoder (gradients to its input and weights).
"""

from __future__ import annotations

import argparse
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


def _pieces(batch: int, torch, rounds: int, reps: int, order: str) -> list[list[str]]:
    """Each piece of the step, forward + backward, cnn_jax against PyTorch (rows)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from cnn_jax.layers.capsules import _routing, strided_valid_conv

    F = torch.nn.functional
    rng = np.random.default_rng(0)

    def arr(*shape):
        return rng.normal(size=shape).astype(np.float32) * 0.1

    def nchw(a):
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2))

    def oihw(k):
        return np.ascontiguousarray(k.transpose(3, 2, 0, 1))

    dn = ("NHWC", "HWIO", "NHWC")

    def jax_vjp(fn, args, wrt, ct):
        def g(*a):
            def f(*d):
                full = list(a)
                for i, v in zip(wrt, d, strict=True):
                    full[i] = v
                return fn(*full)

            return jax.vjp(f, *[a[i] for i in wrt])[1](ct)

        prog = jax.jit(g)
        args = [jnp.asarray(a) for a in args]
        return lambda: jax.block_until_ready(prog(*args))

    def torch_vjp(fn, args, wrt, ct):
        ts = [torch.from_numpy(a).requires_grad_(i in wrt) for i, a in enumerate(args)]
        ct_t = torch.from_numpy(ct)
        return lambda: torch.autograd.grad(fn(*ts), [ts[i] for i in wrt], ct_t)

    _, routing = _torch_capsnet(torch)
    x, k1, ct1 = arr(batch, 28, 28, 1), arr(9, 9, 1, 256), arr(batch, 20, 20, 256)
    h, k2, ct2 = arr(batch, 20, 20, 256), arr(9, 9, 256, 256), arr(batch, 6, 6, 256)
    u, w, ct3 = arr(batch, 1152, 8), arr(1152, 10, 16, 8), arr(batch, 10, 1152, 16)
    uh, ct4 = arr(batch, 10, 1152, 16), arr(batch, 10, 16)
    z, d1, d2, d3, ct5 = (
        arr(batch, 160),
        arr(160, 512),
        arr(512, 1024),
        arr(1024, 784),
        arr(batch, 784),
    )

    def jconv1(x, k):
        return lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=dn)

    def jdec(z, a, b, c):
        return jax.nn.sigmoid(jax.nn.relu(jax.nn.relu(z @ a) @ b) @ c)

    def tdec(z, a, b, c):
        return torch.sigmoid(torch.relu(torch.relu(z @ a) @ b) @ c)

    hn, k2t = torch.from_numpy(nchw(h)), torch.from_numpy(oihw(k2))
    pcf = jax.jit(lambda x, k: strided_valid_conv(x, k, 2))
    hj, k2j = jnp.asarray(h), jnp.asarray(k2)
    cases = {
        "Conv1 9x9 1->256 (kernel grad)": (
            jax_vjp(jconv1, [x, k1], [1], ct1),
            torch_vjp(lambda x, k: F.conv2d(x, k), [nchw(x), oihw(k1)], [1], nchw(ct1)),
        ),
        "PrimaryCaps conv 9x9/2 256->256, forward": (
            lambda: jax.block_until_ready(pcf(hj, k2j)),
            lambda: F.conv2d(hn, k2t, stride=2),
        ),
        "PrimaryCaps conv 9x9/2 256->256": (
            jax_vjp(lambda x, k: strided_valid_conv(x, k, 2), [h, k2], [0, 1], ct2),
            torch_vjp(
                lambda x, k: F.conv2d(x, k, stride=2), [nchw(h), oihw(k2)], [0, 1], nchw(ct2)
            ),
        ),
        "u_hat = W u (1152 x 10 x 16x8)": (
            jax_vjp(lambda u, w: jnp.einsum("nid,ijed->njie", u, w), [u, w], [0, 1], ct3),
            torch_vjp(
                lambda u, w: torch.einsum("nid,ijed->nije", u, w),
                [u, w],
                [0, 1],
                np.ascontiguousarray(ct3.transpose(0, 2, 1, 3)),
            ),
        ),
        "routing, 3 iterations": (
            jax_vjp(lambda u: _routing(u, 3, False, False), [uh], [0], ct4),
            torch_vjp(
                lambda u: routing(u, 3), [np.ascontiguousarray(uh.transpose(0, 2, 1, 3))], [0], ct4
            ),
        ),
        "decoder 160-512-1024-784": (
            jax_vjp(jdec, [z, d1, d2, d3], [0, 1, 2, 3], ct5),
            torch_vjp(tdec, [z, d1, d2, d3], [0, 1, 2, 3], ct5),
        ),
    }
    rows = []
    for what, (jax_fn, torch_fn) in cases.items():
        t = measure({"PyTorch": torch_fn, "cnn_jax": jax_fn}, rounds, reps, order)
        r = ratio(t["cnn_jax"], t["PyTorch"])
        rows.append(
            [what, format_ms(t["PyTorch"].median), format_ms(t["cnn_jax"].median), format_ratio(r)]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Runs both comparisons and prints the report."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument(
        "--pieces",
        action="store_true",
        help="time each piece of the step instead (see the module docstring)",
    )
    ns, rest = own.parse_known_args(sys.argv[1:] if argv is None else argv)
    pieces = ns.pieces
    settings = common.parse_args(
        __doc__.splitlines()[0], rest, order="sample" if pieces else "block", parents=[own]
    )
    used = common.set_threads(settings.threads, settings.omp_wait_policy)
    torch = common.optional_torch()
    if torch is None:
        raise SystemExit("benchmarks.capsnet_routing needs PyTorch CPU: pip install -e '.[torch]'")
    import jax
    import jax.numpy as jnp

    batch = 8 if settings.quick else 32
    t_start = time.perf_counter()
    if pieces:
        rows = _pieces(batch, torch, settings.rounds, settings.reps, settings.order)
        print(f"# CapsNet on CPU: the training step's pieces, forward + backward (batch {batch})\n")
        print("\n".join(environment_lines(settings, used)))
        print()
        print(
            markdown_table(["piece", "PyTorch ms", "cnn_jax ms", "x PyTorch (round range)"], rows)
        )
        print()
        print("\n".join(end_lines(t_start)))
        return
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
