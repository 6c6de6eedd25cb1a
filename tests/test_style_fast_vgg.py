"""cnn_jax.style.fast_vgg: the VGG-19 features ``stylize`` differentiates in its loop.

References: ``VGGFeatures`` (the flax module, ``cnn_jax.ops.conv``) for the values and
``jax.grad`` through it for the input gradient; ``lax``'s own derivative for the
kernel gradient. Small networks (up to ``relu3_1``, 16x16) keep compilation short.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax import ops, style
from cnn_jax.style import fast_vgg

LAYERS = ("conv1_1", "relu1_2", "pool1", "relu2_1", "relu3_1")


@pytest.fixture(scope="module")
def params():
    model = style.VGGFeatures(layers=("relu3_1",))
    return jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 16, 16, 3)))["params"]


def _x(seed=0, n=2, side=16):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, side, side, 3)), jnp.float32)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_features_and_input_gradient_equal_vggfeatures(params, pooling):
    x = _x()
    model = style.VGGFeatures(layers=LAYERS, pooling=pooling)
    prepared = fast_vgg.prepare(params, LAYERS)
    want = model.apply({"params": style.select_params(params, LAYERS)}, x)
    got = fast_vgg.features(prepared, x, LAYERS, pooling)
    assert sorted(got) == sorted(LAYERS)
    for name in LAYERS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)

    weights = jnp.asarray(np.random.default_rng(1).normal(size=want["relu3_1"].shape))

    def loss(f):
        return lambda x: jnp.sum(f(x)["relu3_1"] * weights) + jnp.sum(f(x)["pool1"] ** 2)

    sel = style.select_params(params, LAYERS)
    g_want = jax.grad(loss(lambda x: model.apply({"params": sel}, x)))(x)
    g_got = jax.jit(jax.grad(loss(lambda x: fast_vgg.features(prepared, x, LAYERS, pooling))))(x)
    scale = float(jnp.abs(g_want).max())
    np.testing.assert_allclose(g_got, g_want, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("module", ["features_0", "features_2"])
def test_conv3x3_derivatives_are_lax(params, module):
    """Input and kernel cotangents equal ``lax``'s; ``kernel_t``'s is zero (not in the value).

    ``features_0`` (3 input channels) takes the product-and-shifted-sum input gradient.
    """
    k = params[module]["kernel"]
    c_in, c_out = k.shape[2:]
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 9, 7, c_in)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")

    def ref(x, k):
        return lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)

    g = jnp.asarray(np.random.default_rng(4).normal(size=(2, 9, 7, c_out)), jnp.float32)
    want = jax.vjp(ref, x, k)[1](g)
    kt = fast_vgg.transpose_kernel(k)
    assert kt.shape == (3, 3, c_out, c_in)
    y, vjp = jax.vjp(fast_vgg.conv3x3, x, k, kt)
    np.testing.assert_allclose(y, ref(x, k), rtol=1e-5, atol=1e-5)
    dx, dk, dkt = vjp(g)
    np.testing.assert_allclose(dx, want[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dk, want[1], rtol=1e-4, atol=1e-4)
    assert not np.any(dkt)


def test_convolutions_canonical_inside_a_loop(params):
    """In a scan, every convolution of the value-and-gradient is ``NHWC x HWIO`` (``01io``).

    With autodiff's own input gradient, XLA:CPU keeps a ``01oi`` kernel (swapped
    channels) in loop bodies and computes it without Eigen.
    """
    layers = ("relu2_1",)
    prepared = fast_vgg.prepare(params, layers)

    def loss(p, x):
        return jnp.sum(fast_vgg.features(p, x, layers)["relu2_1"] ** 2)

    def run(p, x):
        def step(x, _):
            v, g = jax.value_and_grad(loss, argnums=1)(p, x)
            return x - 1e-3 * g, v

        return lax.scan(step, x, length=3)

    hlo = jax.jit(run).lower(prepared, _x(0, 1)).compile().as_text()
    labels = re.findall(r"dim_labels=(\w+)_(\w+)->(\w+)", hlo)
    assert len(labels) >= 5  # 3 forward (the first may be fused elsewhere), 3 input grads
    assert {kernel for _, kernel, _ in labels} == {"01io"}, labels


def test_bad_arguments(params):
    prepared = fast_vgg.prepare(params, ("relu2_1",))
    with pytest.raises(ValueError, match="pooling"):
        fast_vgg.features(prepared, _x(), ("relu2_1",), "mean")
    with pytest.raises(ValueError, match="too small"):
        fast_vgg.features(prepared, _x(0, 1, 1), ("relu2_1",))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        fast_vgg.features(prepared, _x()[..., :2], ("relu2_1",))
    with pytest.raises(ValueError, match="conv9_9"):
        fast_vgg.prepare(params, ("conv9_9",))
    with pytest.raises(ValueError, match="features_12"):
        fast_vgg.prepare(params, ("relu4_1",))


def test_winograd_layers_equal_direct(params, monkeypatch):
    """``prepare(winograd=True)``: the wide layers by Winograd, same values and gradient."""
    direct = fast_vgg.prepare(params, LAYERS)
    wino = fast_vgg.prepare(params, LAYERS, winograd=True)
    # conv2_2 (features_7, 128 -> 128) and conv3_1 (features_10, 128 -> 256) qualify
    assert sorted(n for n, p in wino.items() if "u" in p) == ["features_10", "features_7"]
    assert wino["features_10"]["u"].shape == (36, 128, 256)
    assert wino["features_10"]["u_t"].shape == (36, 256, 128)
    assert all("u" not in p for p in direct.values())
    x = _x(3)
    weights = jnp.asarray(np.random.default_rng(5).normal(size=(2, 4, 4, 256)))

    def loss(p):
        return lambda x: jnp.sum(fast_vgg.features(p, x, LAYERS, "avg")["relu3_1"] * weights)

    want = fast_vgg.features(direct, x, LAYERS, "avg")["relu3_1"]
    got = jax.jit(lambda x: fast_vgg.features(wino, x, LAYERS, "avg")["relu3_1"])(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=3e-5 * float(jnp.abs(want).max()))
    g_want = jax.grad(loss(direct))(x)
    g_got = jax.jit(jax.grad(loss(wino)))(x)
    np.testing.assert_allclose(g_got, g_want, rtol=0, atol=3e-5 * float(jnp.abs(g_want).max()))
    # the Winograd convolutions are in the program; none above the pixel bound
    hlo = jax.jit(jax.grad(loss(wino))).lower(x).as_text()
    monkeypatch.setattr(fast_vgg, "WINOGRAD_MAX_PIXELS", 0)
    hlo_direct = jax.jit(jax.grad(loss(wino))).lower(x).as_text()
    assert hlo.count("convolution(") < hlo_direct.count("convolution(")
    assert hlo_direct.count("convolution(") == jax.jit(jax.grad(loss(direct))).lower(
        x
    ).as_text().count("convolution(")


def test_conv3x3_winograd_derivatives(params):
    k = params["features_7"]["kernel"]
    x = jnp.asarray(np.random.default_rng(6).normal(size=(1, 8, 6, 128)), jnp.float32)
    g = jnp.asarray(np.random.default_rng(8).normal(size=(1, 8, 6, 128)), jnp.float32)
    dn = ("NHWC", "HWIO", "NHWC")

    def ref(x, k):
        return lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)

    want = jax.vjp(ref, x, k)[1](g)
    kt = fast_vgg.transpose_kernel(k)
    u, u_t = ops.winograd_kernel(k), ops.winograd_kernel(kt)
    y, vjp = jax.vjp(fast_vgg.conv3x3_winograd, x, k, u, u_t)
    np.testing.assert_allclose(y, ref(x, k), rtol=0, atol=3e-5 * float(jnp.abs(y).max()))
    dx, dk, du, du_t = vjp(g)
    np.testing.assert_allclose(dx, want[0], rtol=0, atol=3e-5 * float(jnp.abs(dx).max()))
    np.testing.assert_allclose(dk, want[1], rtol=1e-4, atol=1e-4)
    assert not np.any(du) and not np.any(du_t)
