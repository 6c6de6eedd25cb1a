"""The flax.linen convolution layers and the initializers by name."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax import layers, ops
from cnn_jax.layers import initializers

KEY = jax.random.key(0)
HIGHEST = lax.Precision.HIGHEST


def _x(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def test_conv_layer_is_the_op_with_its_params(rng):
    x = _x(rng, 2, 9, 9, 4)
    m = layers.Conv(
        6,
        (3, 2),
        strides=2,
        padding="CAUSAL",
        dilation=(1, 2),
        groups=2,
        padding_mode="zeros",
        precision=HIGHEST,
    )
    v = m.init(KEY, x)
    assert v["params"]["kernel"].shape == (3, 2, 2, 6)
    assert v["params"]["bias"].shape == (6,)
    want = ops.conv(
        x,
        v["params"]["kernel"],
        v["params"]["bias"],
        strides=2,
        padding="CAUSAL",
        dilation=(1, 2),
        groups=2,
        precision=HIGHEST,
    )
    np.testing.assert_array_equal(m.apply(v, x), want)


def test_conv_layer_1d_and_3d(rng):
    for shape in [(2, 10, 3), (1, 5, 6, 7, 3)]:
        x = _x(rng, *shape)
        m = layers.Conv(4, 3, padding="SAME", padding_mode="circular", use_bias=False)
        v = m.init(KEY, x)
        assert "bias" not in v["params"]
        assert m.apply(v, x).shape == (*shape[:-1], 4)


def test_conv_transpose_layer_is_the_adjoint_of_conv_layer(rng):
    x = _x(rng, 2, 7, 7, 3)
    conv = layers.Conv(5, 3, strides=2, padding=1, use_bias=False, precision=HIGHEST)
    v = conv.init(KEY, x)
    y = conv.apply(v, x)
    tconv = layers.ConvTranspose(3, 3, strides=2, padding=1, use_bias=False, precision=HIGHEST)
    assert tconv.init(KEY, y)["params"]["kernel"].shape == v["params"]["kernel"].shape
    ty = tconv.apply(v, y, output_shape=(7, 7))
    assert ty.shape == x.shape
    np.testing.assert_allclose(jnp.vdot(y, y), jnp.vdot(x, ty), rtol=1e-4)
    assert tconv.apply(v, y).shape == (2, 7, 7, 3)  # (4 - 1) * 2 + 3 - 2 = 7
    up = layers.ConvTranspose(3, 4, strides=2, padding="SAME")
    assert up.apply(up.init(KEY, y), y).shape == (2, 8, 8, 3)


def test_depthwise_and_separable_layers(rng):
    x = _x(rng, 2, 8, 8, 3)
    dw = layers.DepthwiseConv(3, depth_multiplier=2, strides=2)
    v = dw.init(KEY, x)
    assert v["params"]["kernel"].shape == (3, 3, 1, 6)
    np.testing.assert_allclose(
        dw.apply(v, x),
        ops.conv(x, v["params"]["kernel"], v["params"]["bias"], strides=2, groups=3),
        rtol=1e-6,
    )
    sep = layers.DepthwiseSeparableConv(5, 3, depth_multiplier=2)
    v = sep.init(KEY, x)
    p = v["params"]
    assert p["depthwise_kernel"].shape == (3, 3, 1, 6)
    assert p["pointwise_kernel"].shape == (1, 1, 6, 5)
    want = ops.conv(ops.conv(x, p["depthwise_kernel"], groups=3), p["pointwise_kernel"], p["bias"])
    np.testing.assert_allclose(sep.apply(v, x), want, rtol=1e-5, atol=1e-6)


def test_locally_connected_and_tiled_layers(rng):
    x = _x(rng, 2, 6, 7, 3)
    lc = layers.LocallyConnected(4, 3, strides=(1, 2))
    v = lc.init(KEY, x)
    assert v["params"]["kernel"].shape == (4, 3, 3, 3, 3, 4)
    assert v["params"]["bias"].shape == (4, 3, 4)
    assert lc.apply(v, x).shape == (2, 4, 3, 4)
    shared = layers.LocallyConnected(4, 3, shared_bias=True)
    assert shared.init(KEY, x)["params"]["bias"].shape == (4,)
    tc = layers.TiledConv(4, 3, tile=1)
    vt = tc.init(KEY, x)
    kernel = vt["params"]["kernel"][0, 0]
    np.testing.assert_allclose(
        tc.apply(vt, x),
        ops.conv(x, kernel, vt["params"]["bias"], padding="VALID"),
        rtol=1e-5,
        atol=1e-5,
    )


def test_unshared_kernels_have_the_scale_of_a_conv_kernel():
    x = jnp.zeros((1, 7, 7, 8))
    lc = layers.LocallyConnected(16, 3, kernel_init="he_normal").init(KEY, x)["params"]
    conv = layers.Conv(16, 3, kernel_init="he_normal").init(KEY, x)["params"]
    std = np.std(lc["kernel"])
    assert np.isclose(std, np.std(conv["kernel"]), rtol=0.1)
    assert np.isclose(std, np.sqrt(2 / (9 * 8)), rtol=0.1)
    # and the positions are independent draws
    assert not np.allclose(lc["kernel"][0, 0], lc["kernel"][0, 1])


@pytest.mark.parametrize("kernel_size,c_in,features", [(3, 128, 5), ((3, 3), 16, 8)])
def test_conv_transpose_default_init_std_uses_the_forward_fan_in(kernel_size, c_in, features):
    """The documented scale: ``1 / sqrt(prod(window) * features)``, not flax's ``* C_in``."""
    window = (kernel_size,) if isinstance(kernel_size, int) else kernel_size
    x = jnp.zeros((1, *(8,) * len(window), c_in))
    kernel = layers.ConvTranspose(features, kernel_size).init(KEY, x)["params"]["kernel"]
    assert kernel.shape == (*window, features, c_in)  # the forward layout
    ours = 1 / np.sqrt(np.prod(window) * features)
    flax_std = 1 / np.sqrt(np.prod(window) * c_in)
    assert np.isclose(np.std(kernel), ours, rtol=0.05)
    flax_kernel = nn.ConvTranspose(features, window).init(KEY, x)["params"]["kernel"]
    assert np.isclose(np.std(flax_kernel), flax_std, rtol=0.05)
    if kernel_size == 3:  # the numbers of ConvTranspose's docstring
        assert round(ours, 3) == 0.258 and round(flax_std, 3) == 0.051
    # The documented way to get flax's scale: lecun_normal over this layout's fan-out.
    init = initializers.get_initializer("lecun_normal", mode="fan_out")
    kernel = layers.ConvTranspose(features, kernel_size, kernel_init=init).init(KEY, x)
    assert np.isclose(np.std(kernel["params"]["kernel"]), flax_std, rtol=0.05)


def test_mixed_precision(rng):
    x = _x(rng, 2, 8, 8, 3)
    m = layers.Conv(4, 3, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    v = m.init(KEY, x)
    assert v["params"]["kernel"].dtype == jnp.float32
    assert m.apply(v, x).dtype == jnp.bfloat16
    m16 = layers.ConvTranspose(4, 3, param_dtype=jnp.bfloat16)
    v16 = m16.init(KEY, x)
    assert v16["params"]["kernel"].dtype == jnp.bfloat16
    assert m16.apply(v16, x).dtype == jnp.float32  # promoted with the float32 input
    grads = jax.grad(lambda p: m.apply({"params": p}, x).astype(jnp.float32).sum())(v["params"])
    assert grads["kernel"].dtype == jnp.float32


@pytest.mark.parametrize(
    "module,x_shape,exc,match",
    [
        (layers.Conv(0, 3), (1, 5, 5, 2), ValueError, "`features` \\(=0\\)"),
        (layers.Conv(4, (3, 3, 3)), (1, 5, 5, 2), ValueError, "`kernel_size`"),
        (layers.Conv(4, 3, groups=3), (1, 5, 5, 2), ValueError, "`groups` \\(=3\\)"),
        (layers.Conv(3, 3, groups=2), (1, 5, 5, 2), ValueError, "must divide `features`"),
        (
            layers.Conv(4, 3, kernel_init="he_nromal"),
            (1, 5, 5, 2),
            ValueError,
            "`kernel_init`: unknown initializer 'he_nromal'",
        ),
        (layers.Conv(4, 3), (5, 2), ValueError, "Conv expects inputs of shape"),
        (layers.Conv(4, 3, padding="HALF"), (1, 5, 5, 2), ValueError, "`padding`"),
        (layers.ConvTranspose(3, 3, groups=2), (1, 5, 5, 2), ValueError, "dividing `features`"),
        (
            layers.DepthwiseSeparableConv(4, 3, depth_multiplier=0),
            (1, 5, 5, 2),
            ValueError,
            "`depth_multiplier` \\(=0\\)",
        ),
        (layers.LocallyConnected(4, 7), (1, 5, 5, 2), ValueError, "larger than the padded"),
        (layers.TiledConv(4, 3, tile=0), (1, 5, 5, 2), ValueError, "`tile` \\(=0\\)"),
    ],
)
def test_layer_errors(module, x_shape, exc, match):
    with pytest.raises(exc, match=match):
        module.init(KEY, jnp.zeros(x_shape))


# --- initializers --------------------------------------------------------------------------

SHAPE = (3, 3, 64, 128)
FAN_IN, FAN_OUT = 9 * 64, 9 * 128


@pytest.mark.parametrize(
    "name,kwargs,var",
    [
        ("he_normal", {}, 2 / FAN_IN),
        ("kaiming_normal", {"mode": "fan_out"}, 2 / FAN_OUT),
        ("he_normal", {"distribution": "normal"}, 2 / FAN_IN),
        ("he_uniform", {}, 2 / FAN_IN),
        ("lecun_normal", {}, 1 / FAN_IN),
        ("lecun_uniform", {}, 1 / FAN_IN),
        ("glorot_normal", {}, 2 / (FAN_IN + FAN_OUT)),
        ("xavier_uniform", {}, 2 / (FAN_IN + FAN_OUT)),
        ("small_random", {"stddev": 0.01}, 1e-4),
        ("torch_default", {}, 1 / (3 * FAN_IN)),
        ("uniform", {"scale": 0.3}, 0.09 / 3),
    ],
)
def test_initializer_variances(name, kwargs, var):
    w = initializers.get_initializer(name, **kwargs)(KEY, SHAPE)
    assert w.shape == SHAPE
    assert abs(float(jnp.mean(w))) < 0.05 * np.sqrt(var)
    assert np.isclose(float(jnp.var(w)), var, rtol=0.05)


def test_torch_default_bounds_and_bias():
    w = initializers.get_initializer("torch_default")(KEY, SHAPE)
    assert float(jnp.max(jnp.abs(w))) <= 1 / np.sqrt(FAN_IN)
    b = initializers.get_initializer("torch_default_bias", fan_in=FAN_IN)(KEY, (128,))
    assert float(jnp.max(jnp.abs(b))) <= 1 / np.sqrt(FAN_IN)
    m = layers.Conv(8, 3, kernel_init="torch_default", bias_init="torch_default")
    p = m.init(KEY, jnp.zeros((1, 5, 5, 4)))["params"]
    assert float(jnp.max(jnp.abs(p["bias"]))) <= 1 / 6  # fan_in = 3 * 3 * 4 = 36


@pytest.mark.parametrize("k", [1, 3, 4, 5])
def test_identity_initializer_copies_the_input(k, rng):
    x = _x(rng, 2, 7, 7, 4)
    m = layers.Conv(4, k, kernel_init="identity", use_bias=False, padding="SAME", precision=HIGHEST)
    np.testing.assert_allclose(m.apply(m.init(KEY, x), x), x, rtol=1e-6, atol=1e-6)
    g = layers.Conv(4, 3, groups=2, kernel_init="dirac", use_bias=False, precision=HIGHEST)
    np.testing.assert_allclose(g.apply(g.init(KEY, x), x), x, rtol=1e-6, atol=1e-6)


def test_other_initializers():
    assert float(initializers.get_initializer("zeros")(KEY, (3,)).sum()) == 0
    assert float(initializers.get_initializer("ones")(KEY, (3,)).sum()) == 3
    assert float(
        initializers.get_initializer("constant", value=0.1)(KEY, (10,)).sum()
    ) == pytest.approx(1.0)
    q = initializers.get_initializer("orthogonal")(KEY, (16, 16))
    np.testing.assert_allclose(q @ q.T, np.eye(16), atol=1e-5)
    f = initializers.get_initializer(jax.nn.initializers.zeros)
    assert f is jax.nn.initializers.zeros
    assert "he_normal" in initializers.initializer_names()


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        (("nope",), {}, ValueError, "unknown initializer 'nope'; known: "),
        (("he_normal",), {"mode": "fan_both"}, ValueError, "`mode` \\(='fan_both'\\)"),
        (("he_normal",), {"distribution": "cauchy"}, ValueError, "`distribution`"),
        (("small_random",), {"stddev": -1.0}, ValueError, "`stddev` \\(=-1.0\\)"),
        (("zeros",), {"stddev": 1.0}, TypeError, "does not take options \\['stddev'\\]"),
        (("torch_default_bias",), {}, ValueError, "needs the weight's `fan_in`"),
        ((jax.nn.initializers.zeros,), {"mode": "fan_in"}, TypeError, "only be given with"),
        ((3,), {}, TypeError, "must be a name or a callable"),
    ],
)
def test_initializer_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        initializers.get_initializer(*args, **kwargs)
