"""Eager (un-jitted) calls of the ops: the same values and gradients as under ``jax.jit``,
and no new trace of an op's core per call.

The ops run their core as one ``jax.jit`` per geometry and set of enabled fast paths, so
that an eager ``jax.vmap(jax.value_and_grad(f))`` reuses the traced program instead of
re-tracing custom derivatives at every call (``python -m benchmarks.ops_conv --only
eager`` times it against raw ``lax``).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import ops
from cnn_jax.ops import conv_fast, pool


def _rand(seed, *shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


X = _rand(0, 3, 2, 12, 12, 4)  # vmap axis 3, batch 2, 12x12, 4 channels
OPS = {
    "conv": lambda k, x: ops.conv(x, k, padding="SAME"),
    "conv strided": lambda k, x: ops.conv(x, k, strides=2, padding=1),
    "grouped": lambda k, x: ops.conv(x, k[..., :2, :], groups=2),
    "depthwise": lambda k, x: ops.depthwise_conv(x, k[..., :1, :]),
    "small input": lambda k, x: ops.conv(x[..., :1], k[..., :1, :]),
    "conv_transpose": lambda k, x: ops.conv_transpose(x, k, strides=2, padding=1),
    "conv_transpose tiles": lambda k, x: ops.conv_transpose(x, k[:2, :2], strides=2),
    "conv + max_pool": lambda k, x: ops.max_pool(ops.conv(x, k), 2),
    "max_pool overlapping": lambda k, x: ops.max_pool(ops.conv(x, k), 3, 2, padding=1),
    "avg_pool": lambda k, x: ops.avg_pool(ops.conv(x, k), 2),
    "global_max_pool": lambda k, x: ops.global_max_pool(ops.conv(x, k)),
    "adaptive_max_pool": lambda k, x: ops.adaptive_max_pool(ops.conv(x, k), 5),
}


def _value_and_grad(op):
    def f(k, x):
        y = op(k, x)
        w = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return jnp.sum(jnp.sin(y) * w)

    return jax.vmap(jax.value_and_grad(f, argnums=(0, 1)), in_axes=(None, 0))


CASES = [(name, True) for name in OPS] + [
    (name, False) for name in ("conv + max_pool", "conv_transpose", "depthwise")
]


@pytest.mark.parametrize(
    ("name", "fast_paths"), CASES, ids=[f"{n}-{'fast' if f else 'lax'}" for n, f in CASES]
)
def test_eager_equals_jit(name, fast_paths):
    k = _rand(1, 3, 3, 4, 4)
    g = _value_and_grad(OPS[name])
    with ops.use_fast_paths(fast_paths):
        eager = g(k, X)
        again = g(k, X)  # a second eager call: the cached core
        jitted = jax.jit(g)(k, X)
    for a, b, c in zip(jax.tree.leaves(eager), jax.tree.leaves(again), jax.tree.leaves(jitted)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=2e-5, atol=2e-5)


def test_eager_calls_trace_the_core_once(monkeypatch):
    """Three eager calls of vmap(value_and_grad) through conv and max_pool trace each
    core once: the rule choosing the kernel derivative runs at trace time only."""
    jax.clear_caches()
    traced = []
    choose = conv_fast.kernel_grad_by_products
    monkeypatch.setattr(
        conv_fast, "kernel_grad_by_products", lambda *a: traced.append(a) or choose(*a)
    )
    g = _value_and_grad(lambda k, x: ops.max_pool(ops.conv(x, k, padding="SAME"), 2))
    k = _rand(1, 3, 3, 4, 8)
    with ops.use_fast_paths(["conv"]):
        for _ in range(3):
            jax.block_until_ready(g(k, X))
    jax.clear_caches()
    assert len(traced) == 1


def test_eager_calls_follow_the_switch():
    """The set of enabled fast paths is part of the cached core's key: a change of the
    switch between eager calls takes effect at the next call."""
    x, k = _rand(2, 2, 8, 8, 3), _rand(3, 3, 3, 3, 6)

    def count_convs():
        jaxpr = jax.make_jaxpr(lambda x, k: ops.conv(x, k))(x, k)
        return str(jaxpr).count("conv_general_dilated")

    with ops.use_fast_paths(["small_input"]):
        assert count_convs() == 0
        y_fast = ops.conv(x, k)
    with ops.use_fast_paths(False):
        assert count_convs() == 1
        y_lax = ops.conv(x, k)
    np.testing.assert_allclose(y_fast, y_lax, rtol=1e-5, atol=1e-5)


def test_pool_geometry_is_hashable_and_shared():
    """One geometry type: the pooling ops' geometry is the convolutions' ``Geometry``."""
    from cnn_jax.ops.geometry import ConvGeometry, Geometry

    g = pool.pool_geometry(X[0], 3, 2, "SAME", 1, False)
    assert isinstance(g, Geometry) and ConvGeometry is Geometry
    assert hash(g) == hash(pool.pool_geometry(X[0], 3, 2, "SAME", 1, False))


def test_benchmark_eager_row(capsys, monkeypatch):
    """``python -m benchmarks.ops_conv --only eager`` prints the row with its ratio."""
    from benchmarks import ops_conv

    for name in ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_WAIT_POLICY"):  # restored afterwards
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:  # recorded as unset, then removed: unset again afterwards
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)

    ops_conv.main(["--only", "eager", "--quick", "--rounds", "3", "--reps", "5"])
    out = capsys.readouterr().out
    assert "## Eager calls (no jax.jit)" in out
    row = next(line for line in out.splitlines() if line.startswith("| vmap(value_and_grad"))
    assert len(row.split("|")) == 7  # function, ours, lax, ratio, error
