"""Helpers the model tests share (``tests/test_models_*.py``); not a test module.

Shapes and parameter counts by abstract evaluation (no compute, no memory); random
variables drawn by numpy (much cheaper than compiling ``init``); short SGD runs; logit
comparisons. torchvision's layouts and round trips are in ``tests/model_torch.py``.

Compiling is most of these tests' time on CPU: XLA's backend optimizations double it
and threefry random bits cost ~1 s per call site, so the tests compile without them
(``jit_o0``, ``jit_fast``) and draw from numpy or the RngBitGenerator (``rbg_key``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

#: ``jax.jit`` without XLA's backend optimizations.
jit_o0 = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

#: ``jax.jit`` without XLA's backend optimizations nor LLVM's expensive passes: XLA's CPU
#: backend compiles the Inception graphs 2-5x faster so, which matters more here than the
#: run time of one small batch.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
jit_fast = functools.partial(jax.jit, compiler_options=FAST_COMPILE)


def rbg_key(seed):
    """A key of the RngBitGenerator, whose draws XLA compiles much faster than threefry's."""
    return jax.random.key(seed, impl="rbg")


def normal(shape, seed=0):
    """Standard normal float32 numbers from numpy."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def template(model, size=224, batch=1):
    """The shapes of ``model``'s variables for ``(batch, size, size, 3)`` inputs."""
    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def count(tree) -> int:
    """The number of values in a tree of arrays (or shapes)."""
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))


def output_shapes(model, size, batch=2):
    """``(logits shape, {feature: shape})`` of ``model`` on ``(batch, size, size, 3)``."""
    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    (logits, f), _ = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x))
    return logits.shape, {k: v.shape for k, v in f.items()}


def outputs(model, size, train, batch=2):
    """Shapes of ``(logits, features)`` in evaluation or training mode (dropout and
    batch statistics), by abstract evaluation: no compute, no memory."""
    x = jnp.zeros((batch, size, size, 3), jnp.float32)

    def run():
        variables = model.init(jax.random.key(0), x)
        if not train:
            return model.apply(variables, x)
        out, _ = model.apply(
            variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
        )
        return out

    logits, features = jax.eval_shape(run)
    return tuple(logits.shape), {k: tuple(v.shape) for k, v in features.items()}


def feature_shapes(model, size):
    """``{feature: shape without the batch}`` of ``model`` on one ``size`` x ``size`` image."""
    return {k: tuple(v[1:]) for k, v in output_shapes(model, size, batch=1)[1].items()}


# --- random variables -------------------------------------------------------------------


def he_variables(model, size, seed=0):
    """He-normal kernels, zero biases, unit norms: cheaper than compiling ``init``."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return (rng.standard_normal(leaf.shape) * np.sqrt(2 / fan_in)).astype(np.float32)
        return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)

    return jax.tree_util.tree_map_with_path(fill, template(model, size))


def scaled_variables(model, size, seed=0, stds=None):
    """Random parameters drawn by numpy, much cheaper than a jitted ``init`` here.

    ``stds(path, shape)`` gives each kernel's standard deviation (default: He-scaled
    convolutions, zero dense layers); biases are zero.
    """
    rng = np.random.default_rng(seed)

    def default(path, shape):
        return np.sqrt(2 / np.prod(shape[:-1])) if len(shape) == 4 else 0.0

    def fill(path, v):
        name = path[-1].key
        if name in ("scale", "var"):
            return jnp.ones(v.shape, v.dtype)
        std = (stds or default)(path, v.shape) if name == "kernel" else 0.0
        if not std:
            return jnp.zeros(v.shape, v.dtype)
        x = rng.standard_normal(v.shape, np.float32)
        x *= np.float32(std)
        return jnp.asarray(x)

    return jax.tree_util.tree_map_with_path(fill, template(model, size))


def random_like(tree, seed=0, dtype=None):
    """Random variables of ``tree``'s structure, as numpy arrays (no compilation).

    Kernels are He-scaled, batch norms random (statistics included); ``dtype`` overrides
    the tree's.
    """
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = path[-1].key, tuple(leaf.shape)
        if name == "depthwise_kernel":
            x = rng.normal(0, np.sqrt(2 / np.prod(shape[:-2])), shape)
        elif name.endswith("kernel"):
            x = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
        elif name in ("scale", "var"):
            x = rng.uniform(0.5, 1.5, shape)
        else:  # bias, mean
            x = rng.normal(0, 0.1, shape)
        return x.astype(dtype or leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, tree)


def init_kept(model, size, key=0, keep=None):
    """Initializes under jit; ``keep`` picks leaves (the others' random draws are then
    dead code, never computed). An 'rbg' key: XLA compiles its draws several times
    faster than threefry's on CPU; the distributions are the same."""
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    keep = keep or (lambda v: v)
    return jax.jit(lambda k: keep(model.init(k, x)))(rbg_key(key))


def init_o0(model, size, key=0, batch=1):
    """``model.init`` compiled by ``jit_o0`` with an 'rbg' key."""
    return jit_o0(model.init)(rbg_key(key), jnp.zeros((batch, size, size, 3)))


def std_ratio(kernel, fan):
    """The standard deviation of ``kernel`` over He's ``sqrt(2 / fan)``."""
    return float(np.std(kernel)) / np.sqrt(2.0 / fan)


# --- training ---------------------------------------------------------------------------


def _loss(model, variables, x, y, train, key):
    mutable = ["batch_stats"] if "batch_stats" in variables else False
    out = model.apply(variables, x, train=train, rngs={"dropout": key}, mutable=mutable)
    (logits, features), updates = out if mutable else (out, {})
    onehot = jax.nn.one_hot(y, logits.shape[-1])
    loss = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1))
    return loss, (updates, features)


def sgd_run(model, variables, x, y, lr, steps=3, jit=jax.jit, key=jax.random.key, evaluate=True):
    """SGD steps in training mode (batch statistics updated, dropout on).

    Returns:
      ``(loss before, loss after, training losses, first gradients, features before,
      variables after)``; the losses before and after (and the features) are in
      evaluation mode, ``None`` unless ``evaluate``.
    """

    @jit
    def step(variables, k):
        def f(params):
            return _loss(model, {**variables, "params": params}, x, y, True, k)

        (loss, (updates, _)), grads = jax.value_and_grad(f, has_aux=True)(variables["params"])
        params = jax.tree.map(lambda p, g: p - lr * g, variables["params"], grads)
        return {**variables, **updates, "params": params}, grads, loss

    @jit
    def evaluation(variables):
        loss, (_, features) = _loss(model, variables, x, y, False, key(0))
        return loss, features

    before, features = evaluation(variables) if evaluate else (None, None)
    losses, first = [], None
    for i in range(steps):
        variables, grads, loss = step(variables, key(i))
        losses.append(float(loss))
        first = grads if first is None else first
    if not evaluate:
        return None, None, losses, first, None, variables
    return float(before), float(evaluation(variables)[0]), losses, first, features, variables


def check_training(model, size, lr=0.01):
    """Two SGD steps from He-normal variables: finite, the loss falls, every kernel gets a
    gradient and the running statistics move."""
    x = normal((2, size, size, 3), 1)
    y = jnp.array([3, 7])
    variables = he_variables(model, size)
    _, _, losses, grads, _, trained = sgd_run(
        model, variables, x, y, lr, steps=2, jit=jit_o0, key=rbg_key, evaluate=False
    )
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    for path, g in traverse_util.flatten_dict(grads, sep="/").items():
        assert np.all(np.isfinite(g)), path
        if path.endswith("kernel"):
            assert np.any(g != 0), path
    # the running statistics moved
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(trained["batch_stats"])
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


def abstract_train_apply(model, x):
    """``init`` then a training-mode ``apply``, by abstract evaluation: ``(variables,
    logits, batch-statistics updates)`` as shapes."""

    def f():
        v = model.init(jax.random.key(0), x)
        (logits, _), upd = model.apply(
            v, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]
        )
        return v, logits, upd

    return jax.eval_shape(f)


def check_forward_and_train_step(model, size, lr, stds, pooled):
    """One SGD step of ``model`` (10 classes, ``pooled`` values into the classifier) from
    random variables of torchvision's scales (``stds``): the loss falls, dropout acts in
    training only, every kernel gets a finite nonzero gradient."""
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    y = jnp.array([3, 7])
    variables = scaled_variables(model, size, stds=stds)
    before, after, losses, grads, f, _ = sgd_run(model, variables, x, y, lr, steps=1)
    assert f["logits"].shape == (2, 10) and f["pre_logits"].shape == (2, 4096)
    assert f["pooled"].shape == (2, pooled)
    assert np.all(np.isfinite(losses)) and losses[0] != before  # dropout in training only
    for path, g in traverse_util.flatten_dict(grads, sep="/").items():
        assert np.all(np.isfinite(g)), path
        if path.endswith("kernel"):
            assert np.any(g != 0), path
    assert after < before


def check_train_step_slow(make, lr):
    """Their own initialization; plain SGD on one batch (the papers' N(0, 0.01) with
    biases 1 needs a small rate without momentum); no dropout, so the training-mode
    losses (batch statistics) are comparable."""
    model = make(num_classes=10, dropout=0.0)
    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    _, _, losses, _, _, _ = sgd_run(model, init_kept(model, 64), x, jnp.array([3, 7]), lr, steps=5)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def aux_train_step(model, aux_weight=0.3):
    """An SGD step (momentum 0.9) with the auxiliary losses, returning everything to
    inspect: ``(new variables, loss, grads, logits, aux logits)``."""
    tx = optax.sgd(0.01, momentum=0.9)

    def step(variables, x, y, key):
        opt_state = tx.init(variables["params"])

        def loss_fn(params):
            (logits, feats), updates = model.apply(
                {**variables, "params": params},
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": key},
            )
            aux = {k: v for k, v in feats.items() if k.startswith("aux_logits")}
            loss = cross_entropy(logits, y)
            loss += aux_weight * sum(cross_entropy(v, y) for v in aux.values())
            return loss, (updates, logits, aux)

        (loss, (updates, logits, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            variables["params"]
        )
        changes, opt_state = tx.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], changes)
        return {"params": params, **updates}, loss, grads, logits, aux

    return step


def check_aux_step(variables, new, loss, grads, aux, aux_keys, aux_modules):
    """The step of ``aux_train_step``: finite, the auxiliary logits present and their
    heads trained, every parameter and statistic moved."""
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert sorted(aux) == sorted(aux_keys)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    for module in aux_modules:  # the auxiliary losses reach their heads
        assert np.abs(np.asarray(grads[module]["fc2"]["kernel"])).sum() > 0
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), variables, new)
    assert all(jax.tree.leaves(moved["params"]))
    assert all(jax.tree.leaves(moved["batch_stats"]))


def aux_step_shapes(model, size):
    """``aux_train_step`` by abstract evaluation on a batch of 2; returns the template and
    ``(new, loss, grads, logits, aux)`` as shapes."""
    tmpl = template(model, size, batch=2)
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    y = jax.ShapeDtypeStruct((2,), jnp.int32)
    return tmpl, jax.eval_shape(aux_train_step(model), tmpl, x, y, jax.random.key(0))


# --- comparisons ------------------------------------------------------------------------


def close(ours, theirs):
    """Equal shapes, and values within 1e-4 of the largest of ``theirs``."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    err = np.max(np.abs(ours - theirs))
    assert err <= 1e-4 * np.max(np.abs(theirs)), err


def assert_logits_close(ours, theirs, tol=1e-4):
    """Input-dependent logits ``theirs``, and ``ours`` within ``tol`` of their scale."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    scale = np.abs(theirs).max()
    assert scale > 0 and np.abs(theirs[0] - theirs[1]).max() > 1e-2 * scale  # input-dependent
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol * scale)
