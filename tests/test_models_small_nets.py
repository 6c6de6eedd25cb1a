"""The lecture decks' small networks: parameter counts against the published ones,
structure (shared weights, connection tables, fixed filters) and argument errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from cnn_jax import models
from cnn_jax.models.alexnet_cifar import ACTIVATIONS, AlexNetCifar
from cnn_jax.models.fixed_filters import FixedConv, gabor_bank, sobel_bank
from cnn_jax.models.flops import count_macs
from cnn_jax.models.googlenet import INCEPTION_V1_CONFIG, GoogLeNet
from cnn_jax.models.inception_module import InceptionCifar, InceptionModule
from cnn_jax.models.zipcode import H2_CONNECTIONS, ZipCodeNet, zipcode_counts

KEY = jax.random.key(0)


def _params(model, shape):
    variables = jax.eval_shape(lambda: model.init(KEY, jnp.zeros((1, *shape))))
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize(
    "name, shape, expected",
    [
        ("mlp_mnist", (28, 28, 1), 669_706),  # Keras mnist_mlp
        ("keras_mnist_cnn", (28, 28, 1), 1_199_882),  # Keras mnist_cnn
        ("keras_cifar_cnn", (32, 32, 3), 1_250_858),  # Keras cifar10_cnn
        ("zipcode", (16, 16, 1), 9_760),  # LeCun et al. 1989
        ("alexnet_cifar", (32, 32, 3), 2_432 + 25_632 + 51_264 + 10_250),
        ("plain_init", (32, 32, 3), 269_722 - 2 * 19 * 16 - 0),  # Plain20 minus its BN
    ],
)
def test_parameter_counts(name, shape, expected):
    if name == "plain_init":
        # Plain20's 269,722 less its batch norms' scales and biases (2 per channel).
        widths = [16] + [16] * 6 + [32] * 6 + [64] * 6
        expected = 269_722 - 2 * sum(widths)
    assert _params(models.get_model(name), shape) == expected


def test_zipcode_counts_are_the_papers():
    assert zipcode_counts() == {"units": 1256, "connections": 64660, "parameters": 9760}


def test_zipcode_h2_reads_only_its_eight_h1_maps():
    model = ZipCodeNet()
    x = jax.random.normal(KEY, (1, 16, 16, 1))
    variables = model.init(KEY, x)
    n_h1 = 12

    def h2_of_h1(h1_bias):
        p = dict(variables["params"], h1_bias=h1_bias)
        return model.apply({"params": p}, x)[1]["h2"]

    # Gradient of each H2 map's sum with respect to each H1 map's biases: zero off the
    # table (tanh' > 0, so every connected map has a nonzero gradient).
    jac = jax.jacrev(lambda b: h2_of_h1(b).sum(axis=(0, 1, 2)))(variables["params"]["h1_bias"])
    touched = np.abs(np.asarray(jac)).sum(axis=(1, 2)) > 0  # (out map, in map)
    expected = np.zeros((12, n_h1), bool)
    for o, ins in enumerate(H2_CONNECTIONS):
        expected[o, list(ins)] = True
    np.testing.assert_array_equal(touched, expected)
    assert all(len(c) == 8 for c in H2_CONNECTIONS)


def test_zipcode_h1_shares_weights_and_resizes_mnist():
    model = ZipCodeNet()
    x = jax.random.normal(KEY, (2, 28, 28, 1))
    variables = model.init(KEY, x)
    _, f = model.apply(variables, x)
    assert f["input"].shape == (2, 16, 16, 1) and f["h1"].shape == (2, 8, 8, 12)
    # Shared weights: an input pattern moved by 2 pixels moves H1 by one unit (away
    # from the border, biases set equal).
    p = dict(variables["params"], h1_bias=jnp.zeros((8, 8, 12)))
    img = jnp.zeros((1, 16, 16, 1)).at[0, 6:9, 6:9, 0].set(1.0)
    moved = jnp.roll(img, 2, axis=2)
    h = model.apply({"params": p}, img)[1]["h1"]
    hm = model.apply({"params": p}, moved)[1]["h1"]
    np.testing.assert_allclose(hm[0, 1:7, 2:7], h[0, 1:7, 1:6], atol=1e-6)
    with pytest.raises(ValueError, match="input_size"):
        ZipCodeNet(input_size=28)


def test_keras_mnist_cnn_layers_and_dropout():
    model = models.get_model("keras_mnist_cnn")
    x = jax.random.normal(KEY, (2, 28, 28, 1))
    variables = model.init(KEY, x)
    _, f = model.apply(variables, x)
    assert f["conv1"].shape == (2, 26, 26, 32) and f["conv2"].shape == (2, 24, 24, 64)
    assert f["pool"].shape == (2, 12, 12, 64) and f["hidden"].shape == (2, 128)
    a = model.apply(variables, x, True, rngs={"dropout": jax.random.key(1)})[0]
    b = model.apply(variables, x, True, rngs={"dropout": jax.random.key(2)})[0]
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="dropout_dense"):
        models.get_model("keras_mnist_cnn", dropout_dense=1.5)


def test_mlp_matches_a_numpy_forward_pass():
    model = models.MLP(hidden=(7, 5), activation="tanh", dropout=0.0, num_classes=3)
    x = jax.random.normal(KEY, (4, 3, 3, 1))
    variables = model.init(KEY, x)
    p = jax.tree.map(np.asarray, variables["params"])
    h = np.asarray(x).reshape(4, -1)
    for i in range(2):
        h = np.tanh(h @ p[f"dense{i}"]["kernel"] + p[f"dense{i}"]["bias"])
    ref = h @ p["output"]["kernel"] + p["output"]["bias"]
    np.testing.assert_allclose(model.apply(variables, x)[0], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="nope"):
        models.MLP(activation="nope")
    with pytest.raises(ValueError, match="hidden"):
        models.MLP(hidden=(0,))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_alexnet_cifar_every_activation_runs(activation):
    model = AlexNetCifar(activation=activation)
    x = jax.random.normal(KEY, (2, 32, 32, 3))
    variables = model.init(KEY, x)
    logits, f = model.apply(variables, x)
    assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()
    assert [v.shape[1:] for v in f.values()] == [(32, 32, 32), (16, 16, 32), (8, 8, 64)]
    if activation == "maxout":  # twice the pieces per convolution
        assert variables["params"]["conv1"]["kernel"].shape == (5, 5, 3, 64)
    if activation == "prelu":
        assert variables["params"]["prelu1"]["negative_slope"].shape == (32,)


def test_alexnet_cifar_errors():
    with pytest.raises(ValueError, match="first_layer"):
        AlexNetCifar(first_layer="haar")
    with pytest.raises(ValueError, match="nope"):
        AlexNetCifar(activation="nope")
    with pytest.raises(ValueError, match="widths"):
        AlexNetCifar(widths=(32, 32))


def test_sobel_bank_matches_scipy():
    img = np.asarray(jax.random.normal(KEY, (9, 9)), np.float64)
    bank = sobel_bank(3)
    # Channel 0 correlates with the x-derivative kernel: scipy's sobel along axis 1.
    ours = scipy.ndimage.correlate(img, bank[:, :, 0].astype(np.float64), mode="constant")
    np.testing.assert_allclose(ours, scipy.ndimage.sobel(img, axis=1, mode="constant"))
    ours_y = scipy.ndimage.correlate(img, bank[:, :, 4].astype(np.float64), mode="constant")
    np.testing.assert_allclose(ours_y, scipy.ndimage.sobel(img, axis=0, mode="constant"))
    np.testing.assert_array_equal(bank[:, :, 1], -bank[:, :, 0])
    assert sobel_bank(5).shape == (5, 5, 8)
    with pytest.raises(ValueError, match="size"):
        sobel_bank(4)


def test_gabor_bank_is_zero_mean_unit_norm():
    bank = gabor_bank(5, 32)
    assert bank.shape == (5, 5, 32)
    np.testing.assert_allclose(bank.mean((0, 1)), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(bank.reshape(25, -1), axis=0), 1, rtol=1e-5)
    with pytest.raises(ValueError, match="`n`"):
        gabor_bank(5, 6)


def test_fixed_first_layer_is_not_trainable():
    x = jax.random.normal(KEY, (2, 32, 32, 3))
    for bank in ("sobel", "gabor"):
        model = AlexNetCifar(first_layer=bank)
        variables = model.init(KEY, x)
        assert set(variables["params"]["conv1"]) == {"bias"}  # the kernel is a constant
    layer = FixedConv("sobel", 3, use_bias=False)
    y = layer.apply({}, x)
    lum = np.asarray(x).mean(-1)
    ref = scipy.ndimage.correlate(
        lum[0], sobel_bank(3)[:, :, 0].astype(np.float64), mode="constant"
    )
    np.testing.assert_allclose(y[0, :, :, 0], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="bank"):
        FixedConv("haar")


def test_inception_module_with_and_without_reductions():
    x = (28, 28, 192)  # inception 3a's input in the paper
    red = InceptionModule(*INCEPTION_V1_CONFIG["inception3a"], reduce=True)
    naive = InceptionModule(*INCEPTION_V1_CONFIG["inception3a"], reduce=False)
    c_in, (c1, r3, c3, r5, c5, pp) = 192, INCEPTION_V1_CONFIG["inception3a"]
    bn = 2  # scale and bias per channel
    conv_red = c_in * c1 + c_in * r3 + 9 * r3 * c3 + c_in * r5 + 25 * r5 * c5 + c_in * pp
    conv_naive = c_in * c1 + 9 * c_in * c3 + 25 * c_in * c5
    assert _params(red, x) == conv_red + bn * (c1 + r3 + c3 + r5 + c5 + pp)
    assert _params(naive, x) == conv_naive + bn * (c1 + c3 + c5)
    assert count_macs(red, x) == 28 * 28 * conv_red
    assert count_macs(naive, x) == 28 * 28 * conv_naive
    out = jax.eval_shape(lambda: naive.init_with_output(KEY, jnp.zeros((1, *x)))[0])
    assert out.shape == (1, 28, 28, c1 + c3 + c5 + c_in)  # the pool passes 192 on
    small = InceptionCifar(reduce=False)
    assert _params(small, (32, 32, 3)) > 4 * _params(InceptionCifar(reduce=True), (32, 32, 3))
    with pytest.raises(ValueError, match="width"):
        InceptionCifar(width=0)


def test_googlenet_paper_5x5_option():
    shape = (64, 64, 3)
    default = GoogLeNet(aux_logits=False)
    paper = GoogLeNet(aux_logits=False, paper_5x5=True)
    extra = sum(16 * cfg[3] * cfg[4] for cfg in INCEPTION_V1_CONFIG.values())
    assert _params(default, shape) == 6_624_904
    assert _params(paper, shape) == 6_624_904 + extra == 7_005_832
    v = jax.eval_shape(functools.partial(paper.init, KEY, jnp.zeros((1, *shape))))
    assert v["params"]["inception3a"]["branch3_1"]["conv"]["kernel"].shape == (5, 5, 16, 32)
    v = jax.eval_shape(functools.partial(default.init, KEY, jnp.zeros((1, *shape))))
    assert v["params"]["inception3a"]["branch3_1"]["conv"]["kernel"].shape == (3, 3, 16, 32)
    with pytest.raises(ValueError, match="paper_5x5"):
        GoogLeNet(paper_5x5=1)


def test_plain_init_schemes_and_errors():
    x = jax.random.normal(KEY, (2, 32, 32, 3))
    zeros = models.get_model("plain_init", kernel_init="zeros")
    v = zeros.init(KEY, x)
    assert all(
        not np.any(np.asarray(k))
        for path, k in jax.tree_util.tree_leaves_with_path(v["params"])
        if "conv" in jax.tree_util.keystr(path)
    )
    small = models.get_model("plain_init", kernel_init="small_random", init_stddev=0.05)
    k = small.init(KEY, x)["params"]["net"]["layer2_1"]["conv1"]["kernel"]
    assert abs(float(jnp.std(k)) - 0.05) < 0.005
    assert "batch_stats" in models.get_model("plain_init", batch_norm=True).init(KEY, x)
    with pytest.raises(ValueError, match="depth"):
        models.get_model("plain_init", depth=21)
    with pytest.raises(ValueError, match="bogus"):
        models.get_model("plain_init", kernel_init="bogus")
