"""Tests for cnn_jax.layers.norm: BatchNorm (one device, pmap, sharded jit), LRN."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from cnn_jax.layers.norm import (
    BatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    LocalResponseNorm,
    local_response_norm,
)
from tests.conftest import NUM_CPU_DEVICES, torch_or_skip

# ----------------------------------------------------------------------------- helpers


def np_batch_norm(x, scale, bias, ra_mean, ra_var, momentum, eps, unbiased=True):
    """Reference: returns (y, new_mean, new_var) for one training step, in float64."""
    x = np.asarray(x, np.float64)
    axes = tuple(range(x.ndim - 1))
    n = int(np.prod(x.shape[:-1]))
    mean = x.mean(axes)
    var = ((x - mean) ** 2).mean(axes)
    y = (x - mean) / np.sqrt(var + eps) * scale + bias
    run_var = var * n / (n - 1) if unbiased else var
    return (
        y,
        momentum * ra_mean + (1 - momentum) * mean,
        momentum * ra_var + (1 - momentum) * run_var,
    )


def random_variables(rng, channels):
    return {
        "params": {
            "scale": jnp.asarray(rng.uniform(0.5, 2.0, channels), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=channels), jnp.float32),
        },
        "batch_stats": {
            "mean": jnp.asarray(rng.normal(size=channels), jnp.float32),
            "var": jnp.asarray(rng.uniform(0.5, 2.0, channels), jnp.float32),
        },
    }


def train_step(model, variables, x):
    y, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    return y, {**variables, **updates}


def as_np(tree):
    return jax.tree.map(np.asarray, tree)


# ----------------------------------------------------------------------------- BatchNorm


@pytest.mark.parametrize("shape", [(16, 3), (4, 7, 3), (2, 4, 5, 3), (2, 3, 3, 3, 2)])
@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("fast", [False, True])
def test_batch_norm_matches_numpy_over_steps(rng, shape, unbiased, fast):
    channels = shape[-1]
    model = BatchNorm(momentum=0.8, epsilon=1e-3, unbiased_running_var=unbiased, fast_variance=fast)
    variables = random_variables(rng, channels)
    ref = {k: np.asarray(v, np.float64) for k, v in variables["batch_stats"].items()}
    scale, bias = (np.asarray(variables["params"][k]) for k in ("scale", "bias"))
    for _ in range(3):
        x = rng.normal(2.0, 3.0, shape).astype(np.float32)
        y, variables = train_step(model, variables, x)
        y_ref, ref["mean"], ref["var"] = np_batch_norm(
            x, scale, bias, ref["mean"], ref["var"], 0.8, 1e-3, unbiased
        )
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(variables["batch_stats"]["mean"], ref["mean"], rtol=1e-5)
        np.testing.assert_allclose(variables["batch_stats"]["var"], ref["var"], rtol=1e-5)
    # Evaluation mode normalizes with the running averages and changes nothing.
    x = rng.normal(size=shape).astype(np.float32)
    y = model.apply(variables, x)
    y_ref = (x - ref["mean"]) / np.sqrt(ref["var"] + 1e-3) * scale + bias
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)


def test_batch_norm_statistics_are_per_channel_not_per_position(rng):
    # Channel c has mean c and std c+1 overall, but a different mean at every position.
    x = rng.normal(size=(8, 4, 4, 3)) * np.arange(1, 4) + np.arange(3)
    x = (x + rng.normal(size=(1, 4, 4, 3)) * 5).astype(np.float32)
    model = BatchNorm(use_scale=False, use_bias=False)
    variables = model.init(jax.random.key(0), x)
    y, new = train_step(model, variables, x)
    assert new["batch_stats"]["mean"].shape == (3,)
    np.testing.assert_allclose(new["batch_stats"]["mean"], 0.1 * x.mean((0, 1, 2)), rtol=1e-5)
    y = np.asarray(y)
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var((0, 1, 2)), 1, rtol=1e-4)
    assert np.abs(y.mean(0)).max() > 0.5  # not normalized per position


def test_batch_norm_init_and_variables():
    x = jnp.ones((2, 3, 3, 4))
    model = BatchNorm()
    variables = model.init(jax.random.key(0), x, train=True)  # init never updates stats
    shapes = jax.tree.map(lambda a: (a.shape, a.dtype), variables)
    assert shapes == {
        "params": {"scale": ((4,), jnp.float32), "bias": ((4,), jnp.float32)},
        "batch_stats": {"mean": ((4,), jnp.float32), "var": ((4,), jnp.float32)},
    }
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], 0)
    np.testing.assert_array_equal(variables["batch_stats"]["var"], 1)
    bare = BatchNorm(use_scale=False, use_bias=False).init(jax.random.key(0), x)
    assert "params" not in bare
    custom = BatchNorm(
        scale_init=nn.initializers.constant(3.0),
        bias_init=nn.initializers.constant(-1.0),
        param_dtype=jnp.bfloat16,
    ).init(jax.random.key(0), x)
    assert custom["params"]["scale"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(custom["params"]["scale"], 3)
    np.testing.assert_array_equal(custom["params"]["bias"], -1)
    # Evaluation with the initial statistics is x / sqrt(1 + eps) * scale + bias.
    y = BatchNorm().apply(variables, 2 * x)
    np.testing.assert_allclose(y, 2 / np.sqrt(1 + 1e-5), rtol=1e-6)


@pytest.mark.torch
def test_batch_norm_matches_torch_train_and_eval(rng):
    torch = torch_or_skip()
    channels, torch_momentum, eps = 5, 0.3, 1e-4
    model = BatchNorm(momentum=1 - torch_momentum, epsilon=eps)  # conventions converted
    variables = random_variables(rng, channels)
    t = {k: torch.tensor(np.asarray(v)) for k, v in variables["batch_stats"].items()}
    weight = torch.tensor(np.asarray(variables["params"]["scale"]))
    bias = torch.tensor(np.asarray(variables["params"]["bias"]))
    for _ in range(4):
        x = rng.normal(1.0, 2.0, (6, 4, 3, channels)).astype(np.float32)
        y, variables = train_step(model, variables, x)
        y_t = torch.nn.functional.batch_norm(
            torch.tensor(x).permute(0, 3, 1, 2),
            t["mean"],
            t["var"],
            weight,
            bias,
            training=True,
            momentum=torch_momentum,
            eps=eps,
        )
        np.testing.assert_allclose(y, y_t.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)
        for k in ("mean", "var"):
            np.testing.assert_allclose(variables["batch_stats"][k], t[k].numpy(), rtol=1e-5)
    x = rng.normal(size=(3, 4, 3, channels)).astype(np.float32)
    y = model.apply(variables, x)
    y_t = torch.nn.functional.batch_norm(
        torch.tensor(x).permute(0, 3, 1, 2),
        t["mean"],
        t["var"],
        weight,
        bias,
        training=False,
        eps=eps,
    )
    np.testing.assert_allclose(y, y_t.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.torch
def test_batch_norm_gradients_match_torch(rng):
    torch = torch_or_skip()
    x = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    model = BatchNorm()
    variables = random_variables(rng, 2)

    def loss(params, x):
        y, _ = model.apply({**variables, "params": params}, x, train=True, mutable=True)
        return jnp.sum(y * g)

    gp, gx = jax.grad(loss, argnums=(0, 1))(variables["params"], x)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(np.asarray(variables["params"]["scale"]), requires_grad=True)
    bt = torch.tensor(np.asarray(variables["params"]["bias"]), requires_grad=True)
    yt = torch.nn.functional.batch_norm(xt, None, None, wt, bt, training=True)
    (yt * torch.tensor(g.transpose(0, 3, 1, 2))).sum().backward()
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-5)
    np.testing.assert_allclose(gp["scale"], wt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gp["bias"], bt.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_batch_norm_check_grads_float64(rng):
    x = rng.normal(size=(3, 2, 2, 3))
    model = BatchNorm()
    with jax.enable_x64(True):
        variables = random_variables(rng, 3)

        def f(x, scale):
            v = {**variables, "params": {**variables["params"], "scale": scale}}
            return model.apply(v, x, train=True, mutable=["batch_stats"])[0]

        x64 = jnp.asarray(x, jnp.float64)
        scale = jnp.asarray(variables["params"]["scale"], jnp.float64)
        assert f(x64, scale).dtype == jnp.float64
        check_grads(jax.jit(f), (x64, scale), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize(
    ("shape", "use_scale", "use_bias", "fast_variance"),
    [
        ((2, 4, 5, 3), True, True, False),
        ((2, 4, 5, 3), True, True, True),
        ((16, 3), False, True, False),
        ((2, 3, 3, 2, 4), True, False, True),
        ((2, 4, 5, 3), False, False, False),
    ],
)
def test_batch_norm_fast_path_equals_plain_formula(rng, shape, use_scale, use_bias, fast_variance):
    """Fast path ``batch_norm`` (custom derivative) against JAX's derivative of the
    plain formula, in float64: the same values bit for bit, the same running
    statistics, the same gradients of x, scale and bias (reverse mode) and the same
    tangents (forward mode, running statistics included)."""
    from cnn_jax import ops

    model = BatchNorm(use_scale=use_scale, use_bias=use_bias, fast_variance=fast_variance)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=shape) * 3 + 1, jnp.float64)
        w = jnp.asarray(rng.normal(size=shape), jnp.float64)
        variables = model.init(jax.random.key(0), x)
        params = jax.tree.map(
            lambda p: p + jnp.asarray(rng.normal(size=p.shape)), variables.get("params", {})
        )
        stats = variables["batch_stats"]

        def step(params, x):
            y, upd = model.apply(
                {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            return y, upd["batch_stats"]

        def loss(params, x):
            return jnp.sum(jnp.sin(step(params, x)[0]) * w)

        tx = jnp.asarray(rng.normal(size=shape), jnp.float64)
        tp = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
        results = {}
        for on in (True, False):
            with ops.use_fast_paths(["batch_norm"] if on else False):
                results[on] = (
                    jax.jit(lambda p, x: step(p, x))(params, x),
                    jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x),
                    jax.jit(lambda p, x: jax.jvp(step, (p, x), (tp, tx))[1])(params, x),
                )
    (y1, s1), g1, t1 = results[True]
    (y0, s0), g0, t0 = results[False]
    np.testing.assert_array_equal(y1, y0)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)  # float32 running statistics
    for a, b in zip(jax.tree.leaves((g1, t1)), jax.tree.leaves((g0, t0)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_batch_norm_fast_path_check_grads_second_order(rng):
    from cnn_jax.ops import fast

    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(3, 2, 2, 3)) * 2 + 0.5, jnp.float64)
        scale = jnp.asarray(rng.uniform(0.5, 2.0, 3), jnp.float64)
        bias = jnp.asarray(rng.normal(size=3), jnp.float64)
        check_grads(
            jax.jit(lambda x, s, b: fast.batch_norm_train(x, s, b, 1e-5)),
            (x, scale, bias),
            order=2,
            modes=("fwd", "rev"),
        )


def _reductions(f, *args):
    return f.lower(*args).compile().as_text().count(" reduce(")


def test_batch_norm_fast_path_reductions(rng):
    """The reason for the fast path: the gradient program of a training-mode batch
    norm reduces over the batch four times (mean, variance, sum(ct), sum(x̂ ct)),
    fewer than JAX's derivative of the plain formula."""
    from cnn_jax import ops

    model = BatchNorm()
    x = jnp.asarray(rng.normal(size=(4, 5, 5, 8)), jnp.float32)
    variables = model.init(jax.random.key(0), x)

    def loss(params, x):
        v = {"params": params, "batch_stats": variables["batch_stats"]}
        y, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
        return jnp.sum(jax.nn.relu(y) * x)

    counts = {}
    for on in (True, False):
        with ops.use_fast_paths(["batch_norm"] if on else False):
            counts[on] = _reductions(jax.jit(jax.grad(loss, (0, 1))), variables["params"], x)
    assert counts[True] == 4 < counts[False], counts


def _pmapped_step(model):
    return jax.pmap(lambda v, x: train_step(model, v, x), axis_name="batch", in_axes=(None, 0))


@pytest.mark.parametrize("fast", [False, True])
def test_batch_norm_pmap_equals_whole_batch(rng, fast):
    n = NUM_CPU_DEVICES
    assert jax.device_count() == n
    x = rng.normal(1.0, 2.0, (n * 3, 4, 4, 3)).astype(np.float32)
    variables = random_variables(rng, 3)
    y_ref, v_ref = train_step(BatchNorm(), variables, x)
    y, v = _pmapped_step(BatchNorm(axis_name="batch", fast_variance=fast))(
        variables, x.reshape(n, 3, 4, 4, 3)
    )
    np.testing.assert_allclose(np.asarray(y).reshape(x.shape), y_ref, rtol=1e-5, atol=1e-5)
    for k in ("mean", "var"):
        stats = np.asarray(v["batch_stats"][k])
        np.testing.assert_allclose(
            stats, np.broadcast_to(v_ref["batch_stats"][k], stats.shape), rtol=1e-5, atol=1e-6
        )
    # Without an axis name, every device normalizes its own shard (statistics differ).
    y_local, _ = _pmapped_step(BatchNorm())(variables, x.reshape(n, 3, 4, 4, 3))
    assert not np.allclose(np.asarray(y_local).reshape(x.shape), y_ref, atol=1e-3)


def test_batch_norm_pmap_axis_index_groups(rng):
    n = NUM_CPU_DEVICES
    half = n // 2
    groups = [list(range(half)), list(range(half, n))]
    x = rng.normal(size=(n, 2, 3, 3, 2)).astype(np.float32)
    variables = random_variables(rng, 2)
    model = BatchNorm(axis_name="batch", axis_index_groups=groups)
    y, v = _pmapped_step(model)(variables, x)
    for devices in groups:
        part = x[devices[0] : devices[-1] + 1].reshape(-1, 3, 3, 2)
        y_ref, v_ref = train_step(BatchNorm(), variables, part)
        np.testing.assert_allclose(
            np.asarray(y)[devices].reshape(part.shape), y_ref, rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            np.asarray(v["batch_stats"]["var"])[devices[0]], v_ref["batch_stats"]["var"], rtol=1e-5
        )


def test_batch_norm_shard_map_equals_whole_batch(rng):
    mesh = Mesh(np.array(jax.devices()), ("data",))
    x = rng.normal(size=(NUM_CPU_DEVICES * 2, 3, 3, 4)).astype(np.float32)
    variables = random_variables(rng, 4)
    y_ref, v_ref = train_step(BatchNorm(), variables, x)
    step = jax.shard_map(
        functools.partial(train_step, BatchNorm(axis_name="data")),
        mesh=mesh,
        in_specs=(P(), P("data")),
        out_specs=(P("data"), P()),
    )
    y, v = jax.jit(step)(variables, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for k in ("mean", "var"):
        np.testing.assert_allclose(v["batch_stats"][k], v_ref["batch_stats"][k], rtol=1e-5)


@pytest.mark.parametrize("fast", [False, True])
def test_batch_norm_tuple_of_axis_names_nested_vmap(rng, fast):
    """``axis_name=('a', 'b')`` reduces over both mapped axes: the whole batch's statistics."""
    x = rng.normal(0.5, 2.0, (2, 3, 4, 3, 3, 5)).astype(np.float32)  # (a, b, n, H, W, C)
    variables = random_variables(rng, 5)
    y_ref, v_ref = train_step(BatchNorm(), variables, x.reshape(-1, 3, 3, 5))

    def mapped(model):
        step = functools.partial(train_step, model)
        inner = jax.vmap(step, in_axes=(None, 0), axis_name="b")
        return jax.jit(jax.vmap(inner, in_axes=(None, 0), axis_name="a"))

    y, v = mapped(BatchNorm(axis_name=("a", "b"), fast_variance=fast))(variables, x)
    np.testing.assert_allclose(np.asarray(y).reshape(y_ref.shape), y_ref, rtol=1e-5, atol=1e-5)
    for k in ("mean", "var"):
        stats = np.asarray(v["batch_stats"][k])
        assert stats.shape == (2, 3, 5)
        np.testing.assert_allclose(
            stats, np.broadcast_to(v_ref["batch_stats"][k], stats.shape), rtol=1e-5, atol=1e-6
        )
    # One of the two names: statistics over `b` only, i.e. per slice along `a`.
    y_b, v_b = mapped(BatchNorm(axis_name="b"))(variables, x)
    for a in range(2):
        y_a, v_a = train_step(BatchNorm(), variables, x[a].reshape(-1, 3, 3, 5))
        np.testing.assert_allclose(np.asarray(y_b[a]).reshape(y_a.shape), y_a, atol=1e-5)
        np.testing.assert_allclose(v_b["batch_stats"]["var"][a, 0], v_a["batch_stats"]["var"])
    assert not np.allclose(np.asarray(y_b).reshape(y_ref.shape), y_ref, atol=1e-3)


def test_batch_norm_tuple_of_axis_names_shard_map_2d_mesh(rng):
    mesh = Mesh(np.array(jax.devices()).reshape(2, NUM_CPU_DEVICES // 2), ("hosts", "devices"))
    x = rng.normal(size=(NUM_CPU_DEVICES * 2, 3, 3, 4)).astype(np.float32)
    variables = random_variables(rng, 4)
    y_ref, v_ref = train_step(BatchNorm(), variables, x)
    step = jax.shard_map(
        functools.partial(train_step, BatchNorm(axis_name=("hosts", "devices"))),
        mesh=mesh,
        in_specs=(P(), P(("hosts", "devices"))),
        out_specs=(P(("hosts", "devices")), P()),
    )
    y, v = jax.jit(step)(variables, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for k in ("mean", "var"):
        np.testing.assert_allclose(v["batch_stats"][k], v_ref["batch_stats"][k], rtol=1e-5)


def test_batch_norm_axis_name_list_is_a_type_error():
    with pytest.raises(TypeError, match=r"`axis_name` \(=\['a', 'b'\]\).*tuple"):
        BatchNorm(axis_name=["a", "b"])


@pytest.mark.parametrize("explicit", [False, True])
def test_batch_norm_jit_with_sharded_batch_equals_one_device(rng, explicit):
    if explicit:
        mesh = jax.make_mesh((NUM_CPU_DEVICES,), ("data",))  # Explicit axis types
    else:
        mesh = Mesh(np.array(jax.devices()), ("data",))  # Auto: XLA SPMD partitioner
    x = rng.normal(0.5, 2.0, (NUM_CPU_DEVICES * 2, 5, 5, 3)).astype(np.float32)
    variables = random_variables(rng, 3)
    model = BatchNorm()
    y_ref, v_ref = train_step(model, variables, x)
    x_sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
    assert len(x_sharded.addressable_shards) == NUM_CPU_DEVICES
    assert x_sharded.addressable_shards[0].data.shape == (2, 5, 5, 3)
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    y, v = jax.jit(functools.partial(train_step, model))(variables, x_sharded)
    assert y.sharding.is_equivalent_to(x_sharded.sharding, y.ndim)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for k in ("mean", "var"):
        np.testing.assert_allclose(v["batch_stats"][k], v_ref["batch_stats"][k], rtol=1e-5)


def test_batch_norm_unbound_axis_name_is_a_clear_error(rng):
    x = rng.normal(size=(4, 2, 2, 3)).astype(np.float32)
    model = BatchNorm(axis_name="batch")
    variables = model.init(jax.random.key(0), x, train=True)  # init: no reduction
    assert model.apply(variables, x).shape == x.shape  # evaluation needs no axis
    with pytest.raises(ValueError, match=r"`axis_name` \(='batch'\) is not bound"):
        model.apply(variables, x, train=True, mutable=["batch_stats"])
    with pytest.raises(ValueError, match="axis_name"):
        jax.jit(lambda v, x: train_step(model, v, x))(variables, x)


def test_batch_norm_bfloat16_input_uses_float32_statistics(rng):
    # A mean large against the spread: bfloat16 sums would be far off.
    x32 = (16 + rng.normal(size=(32, 3, 3, 2))).astype(np.float32)
    x = jnp.asarray(x32, jnp.bfloat16)
    xr = np.asarray(x.astype(jnp.float32))  # what the layer actually sees
    model = BatchNorm(use_scale=False, use_bias=False)
    variables = model.init(jax.random.key(0), x)
    y, v = train_step(model, variables, x)
    assert y.dtype == jnp.bfloat16  # no params: the input's dtype
    assert v["batch_stats"]["mean"].dtype == jnp.float32
    y_ref, m_ref, v_ref = np_batch_norm(xr, 1.0, 0.0, 0.0, 1.0, 0.9, 1e-5)
    np.testing.assert_allclose(v["batch_stats"]["mean"], m_ref, rtol=1e-6)
    np.testing.assert_allclose(v["batch_stats"]["var"], v_ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(y, np.float32), y_ref, rtol=1e-2, atol=1e-2)
    # With float32 params the output is float32 (flax's inference), unless `dtype` says.
    full = BatchNorm()
    fv = full.init(jax.random.key(0), x)
    y32, _ = train_step(full, fv, x)
    assert y32.dtype == jnp.float32
    np.testing.assert_allclose(y32, y_ref, rtol=1e-4, atol=1e-4)
    y16, _ = train_step(BatchNorm(dtype=jnp.bfloat16), fv, x)
    assert y16.dtype == jnp.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"momentum": 1.0}, r"`momentum` \(=1.0\) must be in \[0, 1\)"),
        ({"momentum": -0.1}, "`momentum`"),
        ({"momentum": "0.9"}, "`momentum`"),
        ({"epsilon": 0.0}, r"`epsilon` \(=0.0\) must be > 0"),
        ({"epsilon": -1e-5}, "`epsilon`"),
        ({"axis_index_groups": [[0, 1]]}, "`axis_index_groups`.*`axis_name`"),
    ],
)
def test_batch_norm_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchNorm(**kwargs)


def test_batch_norm_momentum_zero_keeps_last_batch(rng):
    x = rng.normal(size=(10, 3)).astype(np.float32)
    model = BatchNorm(momentum=0.0, unbiased_running_var=False)
    _, v = train_step(model, model.init(jax.random.key(0), x), x)
    np.testing.assert_allclose(v["batch_stats"]["mean"], x.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(v["batch_stats"]["var"], x.var(0), rtol=1e-5)


def test_batch_norm_rank_error():
    with pytest.raises(ValueError, match=r"`x` must have shape \(N, \.\.\., C\) with rank >= 2"):
        BatchNorm().init(jax.random.key(0), jnp.ones(3))
    with pytest.raises(TypeError, match="`x` must be an array"):
        BatchNorm().init(jax.random.key(0), [1.0, 2.0])


def test_reexported_flax_norms(rng):
    assert GroupNorm is nn.GroupNorm and LayerNorm is nn.LayerNorm
    assert InstanceNorm is nn.InstanceNorm
    x = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
    y, _ = GroupNorm(num_groups=3).init_with_output(jax.random.key(0), x)
    groups = x.reshape(2, 4, 4, 3, 2)
    ref = (groups - groups.mean((1, 2, 4), keepdims=True)) / np.sqrt(
        groups.var((1, 2, 4), keepdims=True) + 1e-6
    )
    np.testing.assert_allclose(y, ref.reshape(x.shape), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- LRN


def np_lrn(x, size, alpha, beta, k):
    """The paper's formula, channel by channel: alpha used as is."""
    x = np.asarray(x, np.float64)
    channels = x.shape[-1]
    out = np.empty_like(x)
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels - 1, c + (size - 1) // 2)
        s = (x[..., lo : hi + 1] ** 2).sum(-1)
        out[..., c] = x[..., c] / (k + alpha * s) ** beta
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 5, 6, 10])
def test_lrn_matches_numpy_loop_with_paper_alpha(rng, size):
    x = rng.normal(size=(2, 3, 4, 7)).astype(np.float32) * 4
    y = local_response_norm(x, size, alpha=0.05, beta=0.75, k=2.0)
    np.testing.assert_allclose(y, np_lrn(x, size, 0.05, 0.75, 2.0), rtol=1e-5)
    y_mod = LocalResponseNorm(size=size, alpha=0.05).apply({}, x)
    np.testing.assert_allclose(y_mod, y, rtol=1e-6)


def test_lrn_module_defaults_are_alexnets(rng):
    m = LocalResponseNorm()
    assert (m.size, m.alpha, m.beta, m.k, m.alpha_over_n) == (5, 1e-4, 0.75, 2.0, False)
    x = rng.normal(size=(2, 3, 3, 8)).astype(np.float32) * 30
    np.testing.assert_allclose(m.apply({}, x), np_lrn(x, 5, 1e-4, 0.75, 2.0), rtol=1e-5)
    assert m.init(jax.random.key(0), x) == {}


@pytest.mark.torch
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_matches_torch(rng, size):
    torch = torch_or_skip()
    x = rng.normal(size=(2, 3, 5, 6)).astype(np.float32) * 3
    alpha, beta, k = 0.3, 0.6, 1.5
    y = LocalResponseNorm.pytorch(size, alpha=alpha, beta=beta, k=k).apply({}, x)
    y_t = torch.nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)(
        torch.tensor(x).permute(0, 3, 1, 2)
    )
    np.testing.assert_allclose(y, y_t.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)
    # PyTorch's alpha is the paper's alpha * size.
    np.testing.assert_allclose(local_response_norm(x, size, alpha / size, beta, k), y, rtol=1e-5)
    m = LocalResponseNorm.pytorch(size)
    assert (m.k, m.alpha, m.alpha_over_n) == (1.0, 1e-4, True)


def test_lrn_dtype_and_gradients(rng):
    x = rng.normal(size=(2, 3, 5)) * 2
    y = local_response_norm(jnp.asarray(x, jnp.bfloat16), 3, alpha=0.1)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), np_lrn(x, 3, 0.1, 0.75, 2.0), rtol=2e-2)
    with jax.enable_x64(True):
        f = jax.jit(functools.partial(local_response_norm, size=3, alpha=0.1, beta=0.75, k=2.0))
        check_grads(f, (jnp.asarray(x, jnp.float64),), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 0}, ValueError, r"`size` \(=0\) must be positive"),
        ({"size": 2.0}, TypeError, "`size` must be an int"),
        ({"alpha": -1e-4}, ValueError, "`alpha`"),
        ({"beta": -0.5}, ValueError, "`beta`"),
        ({"k": 0.0}, ValueError, r"`k` \(=0.0\) must be > 0"),
    ],
)
def test_lrn_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        local_response_norm(jnp.ones((2, 4)), **kwargs)
    with pytest.raises(error, match=match):
        LocalResponseNorm(**kwargs)


def test_lrn_rank_error():
    with pytest.raises(ValueError, match="`x` must have shape"):
        local_response_norm(jnp.ones(4))
