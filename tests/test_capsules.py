"""Capsule layers, CapsNet, its loss and MultiMNIST (cnn_jax.layers.capsules & co.)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.data.multimnist import make_affnist_like, make_multimnist, multimnist_components
from cnn_jax.layers.capsules import (
    PrimaryCaps,
    RoutingCaps,
    dynamic_routing,
    squash,
    strided_valid_conv,
)
from cnn_jax.models.capsnet import CapsNet, CapsNetBaseline, CapsuleDecoder, capsule_mask
from cnn_jax.train import count_params
from cnn_jax.train.losses_capsule import (
    capsule_loss,
    margin_loss,
    multi_label_correct,
    reconstruction_loss,
)


def _np_squash(s, eps=0.0):
    n2 = np.sum(s**2, -1, keepdims=True)
    return n2 / (1 + n2) * s / np.sqrt(n2 + eps)


def _np_routing(u_hat, r):
    """The lecture's pseudo-code, one loop per index."""
    n, ni, nj, _ = u_hat.shape
    b = np.zeros((n, ni, nj))
    couplings = []
    for _ in range(r):
        c = np.exp(b) / np.exp(b).sum(-1, keepdims=True)
        couplings.append(c)
        s = np.zeros((n, nj, u_hat.shape[-1]))
        for i in range(ni):
            for j in range(nj):
                s[:, j] += c[:, i, j, None] * u_hat[:, i, j]
        v = _np_squash(s, eps=1e-7)  # squash's documented safe norm
        for i in range(ni):
            for j in range(nj):
                b[:, i, j] += np.sum(u_hat[:, i, j] * v[:, j], -1)
    return v, np.stack(couplings)


@pytest.mark.parametrize("r", [1, 2, 3, 4, 5])
def test_routing_matches_numpy_pseudocode_float64(r):
    u = np.random.default_rng(r).normal(size=(2, 7, 4, 5))
    with jax.enable_x64(True):
        v, c = dynamic_routing(jnp.asarray(u), r, return_couplings=True)
        assert v.dtype == jnp.float64
        v_ref, c_ref = _np_routing(u, r)
        np.testing.assert_allclose(np.asarray(v), v_ref, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(np.asarray(c), c_ref, rtol=1e-10, atol=1e-13)
    # float32 against the same loop, looser.
    v32 = dynamic_routing(jnp.asarray(u, jnp.float32), r)
    np.testing.assert_allclose(np.asarray(v32), v_ref, rtol=1e-4, atol=1e-5)


def test_routing_gradient_option():
    u = jax.random.normal(jax.random.key(0), (2, 6, 3, 4))

    def f(u, flow):
        return jnp.sum(dynamic_routing(u, 3, route_gradients=flow) ** 2)

    g_stop, g_flow = jax.grad(f)(u, False), jax.grad(f)(u, True)
    assert np.all(np.isfinite(g_stop)) and np.all(np.isfinite(g_flow))
    assert not np.allclose(g_stop, g_flow)  # the couplings' gradient is dropped by default
    # With one iteration c = 1/J is constant: both options agree.
    g1 = [
        jax.grad(lambda u, o=o: jnp.sum(dynamic_routing(u, 1, route_gradients=o)))(u)
        for o in (0, 1)
    ]
    np.testing.assert_allclose(g1[0], g1[1], rtol=1e-6)


def test_squash_direction_range_and_zero():
    s = jax.random.normal(jax.random.key(1), (50, 8)) * jnp.logspace(-3, 3, 50)[:, None]
    v = squash(s)
    n = np.linalg.norm(np.asarray(v), axis=-1)
    assert np.all(n >= 0) and np.all(n < 1)
    cos = np.sum(np.asarray(v) * np.asarray(s), -1) / (n * np.linalg.norm(np.asarray(s), axis=-1))
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(v), _np_squash(np.asarray(s, np.float64)), rtol=1e-4, atol=1e-7
    )
    z = jnp.zeros(16)
    assert np.all(np.asarray(squash(z)) == 0)
    g = jax.grad(lambda x: jnp.sum(squash(x)))(z)
    assert np.all(np.isfinite(g))
    jac = jax.jacobian(squash)(z)
    assert np.all(np.isfinite(jac))


def test_bad_inputs_name_the_argument():
    u = jnp.zeros((2, 3, 4, 5))
    with pytest.raises(ValueError, match="num_iterations"):
        dynamic_routing(u, 0)
    with pytest.raises(ValueError, match="num_iterations"):
        dynamic_routing(u, 2.0)
    with pytest.raises(ValueError, match=r"u_hat.*\(2, 3, 4\)"):
        dynamic_routing(jnp.zeros((2, 3, 4)), 3)
    layer = RoutingCaps(num_caps=3, caps_dim=4)
    params = layer.init(jax.random.key(0), jnp.zeros((1, 6, 8)))
    assert params["params"]["kernel"].shape == (6, 3, 4, 8)
    with pytest.raises(ValueError, match="capsules of 5 dimensions"):
        layer.apply(params, jnp.zeros((1, 6, 5)))
    with pytest.raises(ValueError, match="`u`"):
        layer.apply(params, jnp.zeros((6, 8)))
    with pytest.raises(ValueError, match="num_caps"):
        RoutingCaps(num_caps=0)
    with pytest.raises(ValueError, match="caps_dim"):
        PrimaryCaps(caps_dim=-1)
    with pytest.raises(ValueError, match="num_iterations"):
        CapsNet(num_iterations=0)
    with pytest.raises(ValueError, match="label"):
        capsule_mask(jnp.ones((2, 10)), jnp.zeros((2, 3)))


def test_strided_valid_conv_equals_lax():
    x = jax.random.normal(jax.random.key(0), (2, 21, 20, 5))
    w = jax.random.normal(jax.random.key(1), (9, 9, 5, 6))
    for s in (1, 2, 3):
        ref = jax.lax.conv_general_dilated(
            x, w, (s, s), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        np.testing.assert_allclose(strided_valid_conv(x, w, s), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "shape,k,s",
    [((2, 20, 20, 3), 9, 2), ((1, 21, 19, 2), 9, 2), ((2, 13, 14, 3), 4, 3), ((1, 9, 9, 2), 3, 2)],
)
def test_strided_valid_conv_gradients_equal_lax_float64(shape, k, s):
    """The matrix-product input gradient and the kernel gradient against lax's, float64."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), shape, jnp.float64)
        w = jax.random.normal(jax.random.key(1), (k, k, shape[-1], 4), jnp.float64)

        def ref(x, w):
            return jax.lax.conv_general_dilated(
                x, w, (s, s), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )

        y = ref(x, w)
        ct = jax.random.normal(jax.random.key(2), y.shape, jnp.float64)
        out, pull = jax.vjp(lambda x, w: strided_valid_conv(x, w, s), x, w)
        want = jax.vjp(ref, x, w)[1](ct)
        np.testing.assert_allclose(out, y, rtol=1e-12, atol=1e-12)
        for got, exp in zip(pull(ct), want):
            np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)
        # the derivative is itself differentiable (reverse over reverse)
        gg = jax.grad(
            lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(strided_valid_conv(x, w, s) ** 2))(x) ** 2)
        )
        gr = jax.grad(lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(ref(x, w) ** 2))(x) ** 2))
        np.testing.assert_allclose(gg(x), gr(x), rtol=1e-10, atol=1e-10)


def test_primary_caps_shapes():
    x = jnp.ones((2, 20, 20, 16))
    layer = PrimaryCaps(num_maps=4, caps_dim=8)
    u, _ = layer.init_with_output(jax.random.key(0), x)
    assert u.shape == (2, 6 * 6 * 4, 8)
    assert np.all(np.linalg.norm(np.asarray(u), axis=-1) < 1)


def test_capsnet_parameter_counts_by_hand():
    conv1 = 9 * 9 * 1 * 256 + 256
    primary = 9 * 9 * 256 * 256 + 256
    digit = 1152 * 10 * 16 * 8
    decoder = (160 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)
    x = jnp.zeros((1, 28, 28, 1))
    shapes = jax.eval_shape(lambda: CapsNet().init(jax.random.key(0), x))
    assert count_params(shapes["params"]) == conv1 + primary + digit + decoder == 8_215_568
    no_dec = jax.eval_shape(lambda: CapsNet(decoder=()).init(jax.random.key(0), x))
    assert count_params(no_dec["params"]) == 6_804_224
    convs = (5 * 5 * 1 * 256 + 256) + (5 * 5 * 256 * 256 + 256) + (5 * 5 * 256 * 128 + 128)
    fcs = (28 * 28 * 128 * 328 + 328) + (328 * 192 + 192) + (192 * 10 + 10)
    base = jax.eval_shape(lambda: CapsNetBaseline().init(jax.random.key(0), x))
    assert count_params(base["params"]) == convs + fcs == 35_445_522


def _small_capsnet(**kw):
    return CapsNet(conv_features=16, primary_maps=4, **kw)


def test_capsnet_shapes_and_masking():
    model = _small_capsnet()
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
    params = model.init(jax.random.key(1), x)
    lengths, f = model.apply(params, x)
    assert lengths.shape == (3, 10)
    assert f["digit_caps"].shape == (3, 10, 16)
    assert f["primary_caps"].shape == (3, 6 * 6 * 4, 8)
    assert f["couplings"].shape == (3, 3, 144, 10)
    np.testing.assert_allclose(np.asarray(f["couplings"]).sum(-1), 1.0, rtol=1e-5)
    assert f["reconstruction"].shape == x.shape
    # Test time: the longest capsule; training: the label's (int or multi-hot).
    np.testing.assert_array_equal(np.argmax(f["mask"], -1), np.argmax(lengths, -1))
    assert np.all(np.asarray(f["mask"]).sum(-1) == 1)
    label = jnp.array([3, 0, 9])
    _, f2 = model.apply(params, x, label=label)
    np.testing.assert_array_equal(f2["mask"], jax.nn.one_hot(label, 10))
    multi = jnp.zeros((3, 10)).at[:, 1].set(1).at[:, 4].set(1)
    _, f3 = model.apply(params, x, label=multi)
    np.testing.assert_array_equal(f3["mask"], multi)
    # The decoder sees only the masked capsule: the others do not change the output.
    v = f2["digit_caps"]
    decoder = CapsuleDecoder()

    def dec(v):
        return decoder.apply({"params": params["params"]["decoder"]}, v, f2["mask"], (28, 28, 1))

    other = v.at[:, 5].set(7.0)
    np.testing.assert_allclose(dec(v), dec(other), rtol=1e-6)
    top2 = _small_capsnet(reconstruct_top=2)
    _, f4 = top2.apply(params, x)
    assert np.all(np.asarray(f4["mask"]).sum(-1) == 2)
    with pytest.raises(ValueError, match="`x`"):
        model.apply(params, jnp.zeros((2, 28, 28)))


def test_margin_loss_by_hand():
    lengths = jnp.array([[0.95, 0.5, 0.05], [0.3, 0.05, 0.8]])
    labels = jnp.array([0, 2])
    # Example 0: present 0.95 >= 0.9 -> 0; absent 0.5 -> 0.5 * 0.4^2 = 0.08; 0.05 -> 0.
    # Example 1: present 0.8 -> (0.1)^2 = 0.01; absent 0.3 -> 0.5 * 0.2^2 = 0.02.
    np.testing.assert_allclose(margin_loss(lengths, labels), [0.08, 0.03], rtol=1e-5)
    multi = jnp.array([[1, 1, 0], [0, 0, 1]])
    # Example 0 with 0 and 1 present: (0.9 - 0.5)^2 = 0.16.
    np.testing.assert_allclose(margin_loss(lengths, multi), [0.16, 0.03], rtol=1e-5)
    rec = jnp.full((2, 2, 2, 1), 0.5)
    img = jnp.zeros((2, 2, 2, 1)).at[0].set(1.0)
    np.testing.assert_allclose(reconstruction_loss(rec, img), [1.0, 1.0])
    loss, correct = capsule_loss(lengths, {"reconstruction": rec}, {"image": img, "label": labels})
    np.testing.assert_allclose(loss, [0.08 + 0.0005, 0.03 + 0.0005], rtol=1e-5)
    np.testing.assert_array_equal(correct, [1.0, 1.0])


def test_multi_label_correct_two_longest():
    lengths = jnp.array([[0.9, 0.8, 0.1, 0.0], [0.9, 0.1, 0.8, 0.0], [0.2, 0.9, 0.8, 0.1]])
    label = jnp.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0]])
    np.testing.assert_array_equal(multi_label_correct(lengths, label), [1, 0, 1])


def _fake_mnist(n=200):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), np.arange(n) % 10


def test_multimnist_deterministic_and_labels():
    images, labels = _fake_mnist()
    a = make_multimnist(images, labels, 300, seed=3)
    b = make_multimnist(images, labels, 300, seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = make_multimnist(images, labels, 300, seed=4)
    assert not np.array_equal(a["image"], c["image"])
    assert a["image"].shape == (300, 36, 36, 1) and a["image"].dtype == np.uint8
    assert np.all(a["label"].sum(-1) == 2)
    d = a["digits"]
    assert np.all(d[:, 0] != d[:, 1])
    np.testing.assert_array_equal(labels[a["source"]], d)
    for n in range(300):
        assert set(np.flatnonzero(a["label"][n])) == set(d[n])
    assert np.abs(a["shift"]).max() <= 4
    parts = multimnist_components(images, a["source"], a["shift"])
    np.testing.assert_array_equal(parts.max(axis=1), a["image"][..., 0])
    # Each part is the digit, shifted: its pixels sum to the source's.
    np.testing.assert_array_equal(
        parts.reshape(300, 2, -1).sum(-1), images[a["source"]].reshape(300, 2, -1).sum(-1)
    )


def test_affnist_like_deterministic():
    images, _ = _fake_mnist(20)
    a = make_affnist_like(images, seed=1)
    np.testing.assert_array_equal(a, make_affnist_like(images, seed=1))
    assert a.shape == (20, 40, 40, 1) and a.dtype == np.uint8
    ident = make_affnist_like(images, seed=1, max_rotation=0, max_scale=0, max_shear=0, max_shift=0)
    np.testing.assert_array_equal(ident[:, 6:34, 6:34], images)
    shifted = make_affnist_like(images, seed=1, affine=False)
    assert shifted.shape == (20, 40, 40, 1)
    np.testing.assert_array_equal(shifted.reshape(20, -1).sum(-1), images.reshape(20, -1).sum(-1))


def test_affnist_like_options_canvas_and_test_size(tmp_path):
    """canvas=28 with every range 0 is the digits themselves; bad options name themselves."""
    from cnn_jax.data.multimnist import AFFNIST_LIKE, _affnist_local

    images, _ = _fake_mnist(10)
    same = make_affnist_like(
        images, seed=2, canvas=28, max_rotation=0, max_scale=0, max_shear=0, max_shift=0
    )
    np.testing.assert_array_equal(same, images)
    opts = dict(AFFNIST_LIKE.options)
    for key, bad in (("canvas", 27), ("test_size", 0), ("max_scale", 1.0), ("max_shift", -1)):
        with pytest.raises(ValueError, match=key):
            _affnist_local(tmp_path, {**opts, key: bad})
