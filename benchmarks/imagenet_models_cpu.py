r"""ImageNet families on the CPU: ours vs torchvision, forward and training step, 224x224.

  python -m benchmarks.imagenet_models_cpu [--batch=4] [--only=resnet50] [--quick]

For each family's representative (torchvision's name), our model is loaded with the
torchvision model's own weights (``cnn_jax.weights.from_torch``), the logits are
checked to agree, and then, interleaved (see ``benchmarks.common``):

* forward: inference mode, ``jax.jit`` vs ``torch.no_grad`` (PyTorch in its faster
  memory format of contiguous and channels_last, measured first);
* train: one SGD-with-momentum step (forward, backward, update, BN statistics).

The table gives images/s of each and the ratio of times ours/PyTorch (below 1: ours is
faster) with the range of per-round ratios. The compile time of each JAX program is
reported on its own. Inception v3 runs at 299x299.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from cnn_jax import weights

#: torchvision name -> input side.
FAMILIES = {
    "alexnet": 224,
    "vgg16": 224,
    "googlenet": 224,
    "inception_v3": 299,
    "resnet50": 224,
    "densenet121": 224,
}


def _torchvision() -> Any:
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import torchvision

    return torchvision


def _torch_model(name: str) -> Any:
    tv = _torchvision()
    kwargs: dict[str, Any] = {}
    if name == "googlenet":
        kwargs = {"aux_logits": False, "init_weights": True}
    if name == "inception_v3":
        kwargs = {"aux_logits": False, "init_weights": True}
    return getattr(tv.models, name)(weights=None, **kwargs)


def _ours(name: str, state: dict[str, np.ndarray], size: int) -> tuple[Any, Any]:
    spec = weights.torchvision_specs()[name]
    kwargs = dict(spec.model_kwargs)
    if name in ("googlenet", "inception_v3"):
        # torchvision builds these with transform_input=False when weights=None.
        kwargs.update(aux_logits=False, transform_input=False)
    model = spec.model(num_classes=1000, **kwargs)
    template = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    variables = weights.from_torch(
        state, template, key_fn=spec.key_fn, transforms=spec.transforms, strict=False
    )
    return model, jax.tree.map(jnp.asarray, variables)


def bench(name: str, size: int, batch: int, settings: common.Settings) -> list[str]:
    """Measures one family; returns its table rows."""
    import torch

    torch.manual_seed(0)
    net = _torch_model(name)
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    model, variables = _ours(name, state, size)
    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 1000, batch)
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    # Agreement in inference mode.
    net.eval()
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(model.apply(variables, xj, train=False)[0])
    err = float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-12))

    fwd = common.compile_jax(lambda v, a: model.apply(v, a, train=False)[0], (variables, xj))
    tx = optax.sgd(0.01, momentum=0.9)
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    opt = tx.init(params)

    def train(params: Any, stats: Any, opt: Any, a: Any, labels: Any) -> Any:
        def loss_fn(p: Any) -> Any:
            (logits, _), upd = model.apply(
                {"params": p, "batch_stats": stats},
                a,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": jax.random.key(0)},
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, upd.get("batch_stats", stats)

        (loss, new_stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, new_opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), new_stats, new_opt, loss

    step = common.compile_jax(train, (params, stats, opt, xj, yj))

    torch_opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    layouts = {}
    for fmt in ("contiguous", "channels_last"):
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        net_f = net.to(memory_format=mf)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).contiguous(memory_format=mf)
        net_f.eval()
        with torch.no_grad():
            net_f(xt)
            t = time.perf_counter()
            net_f(xt)
            layouts[fmt] = time.perf_counter() - t
    fmt = min(layouts, key=layouts.get)
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    net = net.to(memory_format=mf)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).contiguous(memory_format=mf)
    yt = torch.from_numpy(y)

    def torch_fwd() -> None:
        net.eval()
        with torch.no_grad():
            net(xt)

    def torch_train() -> None:
        net.train()
        torch_opt.zero_grad(set_to_none=True)
        out = net(xt)
        torch.nn.functional.cross_entropy(out, yt).backward()
        torch_opt.step()

    rows = []
    for mode, ours_fn, ref_fn in (
        ("forward", fwd, torch_fwd),
        ("train", step, torch_train),
    ):
        t = common.measure(
            {"ours": ours_fn, "torch": ref_fn}, settings.rounds, settings.reps, settings.order
        )
        r = common.ratio(t["ours"], t["torch"])
        program = fwd if mode == "forward" else step
        rows.append(
            [
                name,
                f"{size}",
                mode,
                f"{batch / t['ours'].median:.2f}",
                f"{batch / t['torch'].median:.2f} ({fmt})",
                common.format_ratio(r),
                f"{program.total_s:.1f}",
                f"{err:.1e}" if mode == "forward" else "",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, measures every family and prints the table."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--batch", type=int, default=4, help="images per call (default 4)")
    extra, rest = parser.parse_known_args(argv)
    if extra.batch < 1:
        parser.error(f"--batch (={extra.batch}) must be positive")
    batch = extra.batch
    settings = common.parse_args(
        __doc__.strip().splitlines()[0], rest, order="block", parents=[parser]
    )
    used = common.set_threads(settings.threads, settings.omp_wait_policy)
    if common.optional_torch() is None:
        raise SystemExit("benchmarks.imagenet_models_cpu needs PyTorch: pip install -e '.[torch]'")
    names = [n for n in FAMILIES if settings.only is None or settings.only in n]
    if settings.quick:
        names = names[:1]
    env = common.environment_lines(settings, used)
    t_start = time.perf_counter()
    rows = []
    for name in names:
        rows.extend(bench(name, FAMILIES[name], batch, settings))
    print()
    print("\n".join(env + common.end_lines(t_start)))
    print(f"- batch {batch}; images/s = batch / median time of one call")
    print()
    print(
        common.markdown_table(
            [
                "model",
                "input",
                "mode",
                "ours img/s",
                "PyTorch img/s (layout)",
                "time ours/PyTorch",
                "compile s",
                "logit rel. err",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
