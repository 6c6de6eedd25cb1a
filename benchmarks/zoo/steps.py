"""Compiled training steps and inference of the zoo's models, in JAX and in PyTorch.

``train`` is one training step: forward in training mode (batch statistics),
softmax cross-entropy, backward, SGD with momentum 0.9 (``optax.sgd`` /
``torch.optim.SGD``), batch-norm statistics updated. The JAX step is one jitted
program with the state donated; the PyTorch step is ``zero_grad``, forward,
``backward``, ``step``. ``infer`` is the forward pass in evaluation mode (running
statistics; ``torch.no_grad()``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.harness.programs import JaxProgram, compile_jax, max_rel_error
from benchmarks.harness.timing import best_of
from benchmarks.zoo import Spec, batch_for, torch_models


def train_step_fns(module: Any, tx: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The loss and the training step of a flax module with batch statistics.

    Args:
      module: ``module.apply(variables, x, train=True)`` returns logits, or a tuple
        whose first element is the logits (cnn_jax's models).
      tx: the optax optimizer.

    Returns:
      ``(loss_fn, step)``: ``loss_fn(params, stats, x, y) -> (loss, new_stats)``, the
      mean softmax cross-entropy with integer labels; ``step((params, stats, opt_state),
      x, y) -> (new_state, loss)``, one optimizer step.
    """
    import jax
    import optax

    def loss_fn(p: Any, s: Any, xb: Any, yb: Any) -> Any:
        logits, new = module.apply(
            {"params": p, "batch_stats": s}, xb, train=True, mutable=["batch_stats"]
        )
        logits = logits[0] if isinstance(logits, tuple) else logits
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, new.get("batch_stats", s)

    def step(state: Any, xb: Any, yb: Any) -> Any:
        p, s, o = state
        (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, xb, yb)
        updates, o = tx.update(grads, o, p)
        return (optax.apply_updates(p, updates), s, o), loss

    return loss_fn, step


def jax_programs(
    module: Any, spec: Spec, fast: Any, hlo_path: str | None = None
) -> tuple[JaxProgram, JaxProgram, float]:
    """Compiles the training step and the inference function of a flax module.

    Both are traced inside ``cnn_jax.ops.use_fast_paths(fast)``; new function objects
    are jitted for every call, so that no trace is shared between switch settings.

    Args:
      module: the flax module, ``module(x, train) -> logits``.
      spec: its input.
      fast: the fast-path setting (``use_fast_paths``' argument).
      hlo_path: where to write the optimized HLO of the training step, if given.

    Returns:
      ``(train, infer, first_loss)``: the training step (a step program, its state
      donated) and inference, ready to be timed, and the loss at the initial parameters.
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
    loss_fn, step = train_step_fns(module, tx)

    def infer(p: Any, s: Any, xb: Any) -> Any:
        return module.apply({"params": p, "batch_stats": s}, xb, train=False)

    # The step donates its state: inference gets its own copy of the variables.
    infer_vars = jax.tree.map(jnp.copy, (params, stats))
    with use_fast_paths(fast):
        train = compile_jax(step, ((params, stats, opt_state), x, y), carries_state=True)
        if hlo_path:
            with open(hlo_path, "w") as f:
                f.write(train.hlo())
        inference = compile_jax(infer, (*infer_vars, x))
    first_loss = float(jax.jit(loss_fn)(*infer_vars, x, y)[0])
    return train, inference, first_loss


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
    return max_rel_error(a, b)


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
            model = torch_models()[name]()
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

            times[fmt] = best_of(run)
            if best is None or times[fmt] < times[best[1]]:
                best = (run, fmt)
        assert best is not None
        out[mode] = (best[0], best[1], times)
    return out, first_loss
