"""Tests for cnn_jax.layers.activations: the registry, PReLU, maxout, gated units."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.special import erf

from cnn_jax.layers.activations import (
    GatedActivation,
    Maxout,
    PReLU,
    activation_names,
    gated_activation,
    gated_tanh,
    get_activation,
    identity,
    prelu,
    swish,
)
from tests.conftest import torch_or_skip


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture
def x(rng):
    return (rng.normal(size=(2, 3, 3, 8)) * 3).astype(np.float32)


# ----------------------------------------------------------------------------- registry

NUMPY_REFERENCES = [
    ("relu", {}, lambda x: np.maximum(x, 0)),
    ("ReLU", {}, lambda x: np.maximum(x, 0)),
    ("relu6", {}, lambda x: np.clip(x, 0, 6)),
    ("leaky_relu", {}, lambda x: np.where(x >= 0, x, 0.01 * x)),
    ("leaky-relu", {"negative_slope": 0.2}, lambda x: np.where(x >= 0, x, 0.2 * x)),
    ("elu", {}, lambda x: np.where(x > 0, x, np.expm1(x))),
    ("elu", {"alpha": 0.5}, lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    ("tanh", {}, np.tanh),
    ("sigmoid", {}, sigmoid),
    ("gelu", {}, lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2)))),
    (
        "gelu_tanh",
        {},
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    ),
    (
        "gelu",
        {"approximate": True},
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    ),
    ("swish", {}, lambda x: x * sigmoid(x)),
    ("silu", {}, lambda x: x * sigmoid(x)),
    ("swish", {"beta": 1.7}, lambda x: x * sigmoid(1.7 * x)),
    ("softplus", {}, lambda x: np.log1p(np.exp(x))),
    ("hard_sigmoid", {}, lambda x: np.clip(x + 3, 0, 6) / 6),
    ("hardswish", {}, lambda x: x * np.clip(x + 3, 0, 6) / 6),
    ("identity", {}, lambda x: x),
    ("linear", {}, lambda x: x),
    ("maxout", {"num_pieces": 2}, lambda x: x.reshape(*x.shape[:-1], 4, 2).max(-1)),
    ("maxout", {"num_pieces": 4}, lambda x: x.reshape(*x.shape[:-1], 2, 4).max(-1)),
    ("gated_tanh", {}, lambda x: np.tanh(x[..., :4]) * sigmoid(x[..., 4:])),
]


@pytest.mark.parametrize(("name", "kwargs", "reference"), NUMPY_REFERENCES)
def test_named_activations_match_numpy(x, name, kwargs, reference):
    f = get_activation(name, **kwargs)
    y = f(jnp.asarray(x))
    expected = reference(x.astype(np.float64))
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_gelu_default_is_exact_unlike_jax_default(x):
    exact = get_activation("gelu")(x)
    approx = get_activation("gelu_tanh")(x)
    assert not np.allclose(exact, approx, rtol=0, atol=1e-5)
    np.testing.assert_allclose(approx, jax.nn.gelu(x), rtol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "kwargs", "torch_fn"),
    [
        ("relu", {}, "relu"),
        ("relu6", {}, "relu6"),
        ("leaky_relu", {"negative_slope": 0.1}, ("leaky_relu", {"negative_slope": 0.1})),
        ("elu", {"alpha": 0.7}, ("elu", {"alpha": 0.7})),
        ("selu", {}, "selu"),
        ("gelu", {}, "gelu"),
        ("gelu_tanh", {}, ("gelu", {"approximate": "tanh"})),
        ("silu", {}, "silu"),
        ("softplus", {}, "softplus"),
        ("hard_sigmoid", {}, "hardsigmoid"),
        ("hard_swish", {}, "hardswish"),
        ("tanh", {}, "tanh"),
        ("sigmoid", {}, "sigmoid"),
    ],
)
def test_named_activations_match_torch(x, name, kwargs, torch_fn):
    torch = torch_or_skip()
    fn_name, fn_kwargs = torch_fn if isinstance(torch_fn, tuple) else (torch_fn, {})
    expected = getattr(torch.nn.functional, fn_name)(torch.tensor(x), **fn_kwargs).numpy()
    np.testing.assert_allclose(get_activation(name, **kwargs)(x), expected, rtol=1e-5, atol=1e-6)


def test_registry_passthrough_and_names():
    assert get_activation(None) is identity
    assert get_activation(jnp.tanh) is jnp.tanh
    names = activation_names()
    assert names == sorted(names)
    for name in [
        "relu",
        "leaky_relu",
        "elu",
        "prelu",
        "tanh",
        "sigmoid",
        "gelu",
        "gelu_tanh",
        "swish",
        "silu",
        "maxout",
        "identity",
        "linear",
        "gated_tanh",
    ]:
        assert name in names
    assert get_activation(" Leaky-ReLU ")(jnp.asarray(-1.0)) == pytest.approx(-0.01)


def test_registry_errors():
    with pytest.raises(ValueError, match=r"unknown activation 'relux'; known: .*leaky_relu"):
        get_activation("relux")
    with pytest.raises(TypeError, match=r"activation 'relu' got options \['slope'\]"):
        get_activation("relu", slope=0.1)
    with pytest.raises(TypeError, match="accepts: `negative_slope`"):
        get_activation("leaky_relu", slope=0.1)
    with pytest.raises(TypeError, match="`num_pieces`"):
        get_activation("maxout")
    with pytest.raises(ValueError, match=r"`num_pieces` \(=0\) must be positive"):
        get_activation("maxout", num_pieces=0)
    with pytest.raises(TypeError, match="`negative_slope` must be a real number"):
        get_activation("leaky_relu", negative_slope="0.1")
    with pytest.raises(TypeError, match="`approximate` must be a bool"):
        get_activation("gelu", approximate="tanh")
    with pytest.raises(TypeError, match="only be given with an activation name"):
        get_activation(jnp.tanh, alpha=1.0)
    with pytest.raises(TypeError, match="`activation` must be a name, a callable or None"):
        get_activation(3)


def test_swish_function(x):
    np.testing.assert_allclose(swish(x, 0.5), x * sigmoid(0.5 * x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(swish(x), jax.nn.silu(x), rtol=1e-6)


# ----------------------------------------------------------------------------- PReLU


def test_prelu_module_init_and_forward(x):
    model = PReLU()
    variables = model.init(jax.random.key(0), x)
    slope = variables["params"]["negative_slope"]
    assert slope.shape == (8,) and slope.dtype == jnp.float32
    np.testing.assert_array_equal(slope, 0.25)
    slopes = jnp.linspace(0.1, 0.8, 8)
    y = model.apply({"params": {"negative_slope": slopes}}, x)
    np.testing.assert_allclose(y, np.where(x >= 0, x, np.asarray(slopes) * x), rtol=1e-6)
    shared = PReLU(channel_shared=True, negative_slope_init=0.1).init(jax.random.key(0), x)
    assert shared["params"]["negative_slope"].shape == ()
    np.testing.assert_allclose(shared["params"]["negative_slope"], 0.1)
    # Channels first: the slope follows `axis`.
    xc = np.moveaxis(x, -1, 1)
    yc = PReLU(axis=1).apply({"params": {"negative_slope": slopes}}, xc)
    np.testing.assert_allclose(yc, np.moveaxis(np.asarray(y), -1, 1), rtol=1e-6)
    assert PReLU().apply({"params": {"negative_slope": slopes}}, x.astype(jnp.bfloat16)).dtype == (
        jnp.bfloat16
    )


@pytest.mark.torch
@pytest.mark.parametrize("channel_shared", [False, True])
def test_prelu_forward_and_gradients_match_torch(rng, x, channel_shared):
    torch = torch_or_skip()
    g = rng.normal(size=x.shape).astype(np.float32)
    n = 1 if channel_shared else 8
    slopes = rng.uniform(0.05, 0.5, n).astype(np.float32)
    params = {"negative_slope": jnp.asarray(slopes[0] if channel_shared else slopes)}
    model = PReLU(channel_shared=channel_shared)

    def loss(params, x):
        return jnp.sum(model.apply({"params": params}, x) * g)

    gp, gx = jax.grad(loss, argnums=(0, 1))(params, x)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(slopes, requires_grad=True)
    yt = torch.nn.functional.prelu(xt, wt)
    np.testing.assert_allclose(
        model.apply({"params": params}, x), yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-6
    )
    (yt * torch.tensor(g.transpose(0, 3, 1, 2))).sum().backward()
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-6)
    np.testing.assert_allclose(np.reshape(gp["negative_slope"], -1), wt.grad.numpy(), rtol=1e-4)
    # d loss / d slope_c = sum over the positions of channel c of min(0, x) * g
    expected = (np.minimum(x, 0) * g).reshape(-1, 8).sum(0)
    np.testing.assert_allclose(
        np.reshape(gp["negative_slope"], -1),
        expected.sum(keepdims=True) if channel_shared else expected,
        rtol=1e-4,
    )


def test_prelu_check_grads(rng):
    x = rng.normal(size=(2, 3, 4))
    x = np.where(np.abs(x) < 0.05, 0.5, x)  # keep away from the kink
    slopes = rng.uniform(0.1, 0.5, 4)
    with jax.enable_x64(True):
        args = (jnp.asarray(x, jnp.float64), jnp.asarray(slopes, jnp.float64))
        check_grads(jax.jit(prelu), args, order=1, modes=("fwd", "rev"))


def test_prelu_from_registry_inside_a_parent_module(x):
    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(6)(x)
            return get_activation("prelu", channel_shared=True, name="act")(x)

    variables = Block().init(jax.random.key(0), x)
    assert variables["params"]["act"]["negative_slope"].shape == ()
    assert Block().apply(variables, x).shape == (*x.shape[:-1], 6)
    assert isinstance(get_activation("prelu"), PReLU)
    with pytest.raises(TypeError, match=r"accepts: .*`channel_shared`"):
        get_activation("prelu", num_parameters=8)


def test_prelu_slope_shape_error(x):
    with pytest.raises(ValueError, match=r"`negative_slope` must be a scalar or have shape \(8,\)"):
        prelu(x, jnp.ones(3))
    with pytest.raises(ValueError, match=r"`axis` \(=4\) is out of range"):
        PReLU(axis=4).init(jax.random.key(0), x)


# ----------------------------------------------------------------------------- maxout, gates


def test_maxout_module_and_axis(x):
    y = Maxout(num_pieces=2).apply({}, x)
    np.testing.assert_array_equal(y, x.reshape(2, 3, 3, 4, 2).max(-1))
    y1 = Maxout(num_pieces=3, axis=1).apply({}, x)
    np.testing.assert_array_equal(y1, x.max(1, keepdims=True))
    np.testing.assert_array_equal(get_activation("maxout", num_pieces=3, axis=1)(x), y1)
    with pytest.raises(ValueError, match=r"`num_pieces` \(=0\) must be positive"):
        Maxout(num_pieces=0)
    with pytest.raises(ValueError, match="`num_pieces`"):
        Maxout(num_pieces=3).apply({}, x)  # 8 channels


def test_gated_activation_and_gated_tanh(rng, x):
    f, g = rng.normal(size=(2, 5, 3))
    np.testing.assert_allclose(gated_activation(f, g), np.tanh(f) * sigmoid(g), rtol=1e-6)
    y = gated_tanh(x)
    assert y.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(y, gated_activation(x[..., :4], x[..., 4:]), rtol=1e-6)
    # One conv with 2C outputs + gated_tanh == WaveNet's two convs + gated_activation.
    w = rng.normal(size=(8, 6)).astype(np.float32)
    np.testing.assert_allclose(
        gated_tanh(x @ w), gated_activation(x @ w[:, :3], x @ w[:, 3:]), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(GatedActivation().apply({}, x), y, rtol=1e-6)
    xc = np.moveaxis(x, -1, 1)
    np.testing.assert_allclose(
        GatedActivation(axis=1).apply({}, xc), np.moveaxis(y, -1, 1), rtol=1e-6
    )
    np.testing.assert_allclose(
        get_activation("gated_tanh", axis=1)(xc), np.moveaxis(y, -1, 1), rtol=1e-6
    )
    with jax.enable_x64(True):
        check_grads(
            jax.jit(gated_tanh), (jnp.asarray(x, jnp.float64),), order=1, modes=("fwd", "rev")
        )


def test_gated_tanh_errors():
    with pytest.raises(ValueError, match=r"even number of channels along `axis` \(=-1\)"):
        gated_tanh(jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"`axis` \(=2\) is out of range"):
        gated_tanh(jnp.ones((2, 4)), axis=2)
    with pytest.raises(TypeError, match="`axis` must be an int"):
        get_activation("gated_tanh", axis=1.0)
