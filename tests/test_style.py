"""cnn_jax.style: VGG-19 features, Gatys et al.'s losses and the image optimization.

No ImageNet weights are available offline: the VGG-19 here has torchvision's
initialization (Kaiming-normal, fan_out), built in PyTorch by
``benchmarks.style_transfer_cpu.torch_vgg19_features`` (torchvision's layer indices) and
saved to a ``.pth`` by the tests, or initialized by flax with the same scheme. The
optimization tests use the first two blocks at 16x16 so that they compile in seconds.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import ops, style
from cnn_jax.models import VGG19
from tests import torch_oracle

SHALLOW = style.StyleWeights(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


@pytest.fixture(scope="module")
def params():
    """Flax-initialized VGG-19 conv params (torchvision's init scheme), full tree."""
    model = style.VGGFeatures(layers=("relu5_4",))
    return jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]


def _image(seed, h=16, w=16):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def test_layer_names_and_strides():
    assert style.LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert len(style.LAYERS) == 16 * 2 + 5
    assert style.min_image_size(("relu1_1",)) == 1
    assert style.min_image_size(("relu4_2", "relu5_1")) == 16
    assert style.min_image_size(("pool5",)) == 32
    with pytest.raises(ValueError, match="conv6_1"):
        style.min_image_size(("conv6_1",))


def test_same_parameter_tree_as_vgg19(params):
    """Every VGG19 ``features_*`` module is a VGGFeatures module of the same shape."""
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    full = jax.eval_shape(VGG19().init, jax.random.key(2), x)["params"]
    convs = {k: v for k, v in full.items() if k.startswith("features_")}
    assert sorted(convs) == sorted(params)
    for name, leaves in convs.items():
        for leaf, v in leaves.items():
            assert params[name][leaf].shape == v.shape
    shallow = style.select_params({"params": full}, ("relu2_1",))
    assert sorted(shallow) == ["features_0", "features_2", "features_5"]
    with pytest.raises(ValueError, match="features_5"):
        style.select_params({"features_0": params["features_0"]}, ("relu2_1",))


def test_features_match_torch_and_pth_loads(tmp_path):
    torch = torch_oracle.torch()
    from benchmarks.style_transfer_cpu import torch_features, torch_state_dict, torch_vgg19_features

    net = torch_vgg19_features(torch, seed=3, pooling="avg")
    path = tmp_path / "vgg19_features.pth"
    torch.save({k: torch.from_numpy(v) for k, v in torch_state_dict(net).items()}, path)
    params = style.load_vgg19(path)
    assert len(params) == 16
    x = _image(4, 32, 32)
    layers = ("relu1_1", "relu3_1", "relu4_2", "relu5_1")
    ours = style.VGGFeatures(layers=layers, pooling="avg").apply(
        {"params": style.select_params(params, layers)}, style.preprocess(x[None])
    )
    with torch.no_grad():
        t_in = torch.from_numpy(np.asarray(style.preprocess(x[None])).transpose(0, 3, 1, 2).copy())
        ref = torch_features(net, t_in, layers)
    for name in layers:
        want = ref[name].numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(ours[name], want, rtol=2e-3, atol=2e-4 * np.abs(want).max())


def test_wrong_weight_files(tmp_path):
    good = {f"features.{i}.weight": np.zeros((64, 3, 3, 3), np.float32) for i in (0,)}
    with pytest.raises(ValueError, match="not torchvision's vgg19"):
        style.load_vgg19(good)
    resnet = {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}
    with pytest.raises(ValueError, match="not torchvision's vgg19"):
        style.load_vgg19(resnet)
    bad = tmp_path / "vgg19.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"vgg19\.pth"):
        style.load_vgg19(bad)
    with pytest.raises(FileNotFoundError):
        style.load_vgg19(tmp_path / "missing.pth")


def test_wrong_shapes_are_refused(params):
    from flax import traverse_util

    state = {}
    for (name, leaf), v in traverse_util.flatten_dict(params).items():
        key = f"features.{name.split('_')[1]}.{'weight' if leaf == 'kernel' else 'bias'}"
        v = np.asarray(v)
        state[key] = v.transpose(3, 2, 0, 1) if leaf == "kernel" else v
    assert len(style.load_vgg19(state)) == 16
    state["features.34.weight"] = np.zeros((512, 512, 1, 1), np.float32)  # a VGG-like other net
    with pytest.raises(ValueError, match=r"features\.34\.weight"):
        style.load_vgg19(state)


def test_preprocessing_round_trip_and_caffe_bgr():
    x = _image(5, 4, 4)
    for kind in style.PREPROCESSING:
        np.testing.assert_allclose(style.deprocess(style.preprocess(x, kind), kind), x, atol=1e-5)
    caffe = np.asarray(style.preprocess(x, "caffe"))
    np.testing.assert_allclose(caffe[..., 0], x[..., 2] * 255 - 103.939, rtol=1e-5, atol=1e-3)
    tv = np.asarray(style.preprocess(x, "torchvision"))
    np.testing.assert_allclose(tv[..., 1], (x[..., 1] - 0.456) / 0.224, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="preprocessing"):
        style.preprocess(x, "imagenet")


def test_gram_matrix_against_numpy():
    f = np.random.default_rng(0).normal(size=(2, 5, 7, 4)).astype(np.float32)
    want = np.zeros((2, 4, 4))
    for b in range(2):
        for i in range(4):
            for j in range(4):
                want[b, i, j] = sum(
                    f[b, y, x, i] * f[b, y, x, j] for y in range(5) for x in range(7)
                )
    np.testing.assert_allclose(style.gram_matrix(jnp.asarray(f)), want, rtol=1e-5, atol=1e-5)
    # E_l with the paper's 1 / (4 N^2 M^2)
    a = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    e = np.sum((want - a) ** 2, axis=(1, 2)) / (4 * 4**2 * 35**2)
    np.testing.assert_allclose(style.layer_style_loss(jnp.asarray(f), a), e, rtol=1e-5)


def test_losses_zero_for_identical_positive_otherwise(params):
    layers = SHALLOW.layers
    net = style.VGGFeatures(layers=layers)
    p = {"params": style.select_params(params, layers)}
    a, b = _image(1), _image(2)
    fa = net.apply(p, style.preprocess(a[None]))
    fb = net.apply(p, style.preprocess(b[None]))
    grams = {n: style.gram_matrix(fa[n]) for n in layers}
    loss, parts = style.total_loss(fa, a[None], fa, grams, SHALLOW)
    assert float(loss[0]) == 0.0 and float(parts["content"][0]) == 0.0
    loss, parts = style.total_loss(fb, b[None], fa, grams, SHALLOW)
    assert float(parts["content"][0]) > 0 and float(parts["style"][0]) > 0
    assert float(style.tv_loss(jnp.asarray(b[None]))[0]) > 0
    assert float(style.tv_loss(jnp.ones((1, 4, 4, 3)))[0]) == 0.0


def test_style_loss_invariant_to_spatial_shuffles():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(1, 6, 6, 8)).astype(np.float32)
    target = style.gram_matrix(jnp.asarray(rng.normal(size=(1, 6, 6, 8)).astype(np.float32)))
    perm = rng.permutation(36)
    shuffled = f.reshape(1, 36, 8)[:, perm].reshape(1, 6, 6, 8)
    a = style.layer_style_loss(jnp.asarray(f), target)
    b = style.layer_style_loss(jnp.asarray(shuffled), target)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert float(style.content_loss(jnp.asarray(shuffled), jnp.asarray(f))[0]) > 0


def test_gradient_wrt_image_is_finite(params):
    layers = SHALLOW.layers
    net = style.VGGFeatures(layers=layers, pooling="avg")
    p = {"params": style.select_params(params, layers)}
    c, s, x = _image(1), _image(2), _image(3)
    fc = net.apply(p, style.preprocess(c[None]))
    grams = {n: style.gram_matrix(net.apply(p, style.preprocess(s[None]))[n]) for n in layers}
    weights = style.StyleWeights(content_layers=("relu2_1",), style_layers=layers, tv_weight=1.0)

    def loss(img):
        f = net.apply(p, style.preprocess(img[None]))
        return style.total_loss(f, img[None], fc, grams, weights)[0][0]

    g = jax.grad(loss)(jnp.asarray(x))
    assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


@pytest.mark.parametrize("winograd", [False, True])
def test_gatys_loss_is_total_loss_through_vgg_features(params, winograd):
    # the objective stylize minimizes, against the same loss built from VGGFeatures and
    # total_loss by hand (another network path than fast_vgg's), value and gradient
    weights = style.StyleWeights(
        content_layers=("relu2_1",), style_layers=SHALLOW.style_layers, beta=50.0, tv_weight=0.5
    )
    net = style.VGGFeatures(layers=weights.layers, pooling="avg")
    p = {"params": style.select_params(params, weights.layers)}
    c, s, x = _image(1), _image(2, 20, 24), jnp.asarray(_image(3))
    fc = net.apply(p, style.preprocess(c[None]))
    fs = net.apply(p, style.preprocess(s[None]))
    grams = {n: style.gram_matrix(fs[n]) for n in weights.style_layers}

    def expected(img):
        f = net.apply(p, style.preprocess(img[None]))
        return style.total_loss(f, img[None], fc, grams, weights)[0][0]

    loss = style.gatys_loss(params, c, s, weights=weights, winograd=winograd)
    got_v, got_g = jax.jit(jax.value_and_grad(loss))(x)
    want_v, want_g = jax.value_and_grad(expected)(x)
    assert got_v.shape == () and got_v.dtype == jnp.float32
    np.testing.assert_allclose(got_v, want_v, rtol=1e-4)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-3, atol=1e-4 * float(jnp.abs(want_g).max()))


def test_gatys_loss_keeps_float64_and_checks_arguments(params):
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        loss = style.gatys_loss(p64, _image(1).astype(np.float64), _image(2), weights=SHALLOW)
        assert loss(jnp.asarray(_image(3), jnp.float64)).dtype == jnp.float64
    with pytest.raises(ValueError, match=r"`content` must be an \(H, W, 3\) RGB image"):
        style.gatys_loss(params, _image(1)[..., :2], _image(2), weights=SHALLOW)
    with pytest.raises(ValueError, match="`pooling` \\(='mean'\\) must be 'max' or 'avg'"):
        style.gatys_loss(params, _image(1), _image(2), weights=SHALLOW, pooling="mean")


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_short_optimization_lowers_the_loss(params, optimizer):
    seen = []
    img, losses = style.stylize(
        params,
        _image(1),
        _image(2, 20, 24),
        weights=SHALLOW,
        steps=6,
        optimizer=optimizer,
        learning_rate=0.05,
        key=jax.random.key(0),
        callback=lambda step, x, info: seen.append((step, x.shape, info["loss"])),
        callback_every=3,
    )
    assert img.shape == (16, 16, 3) and img.min() >= 0.0 and img.max() <= 1.0
    assert losses.shape == (7,) and np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]
    assert [s for s, _, _ in seen] == [3, 6]
    assert seen[-1][2] == pytest.approx(float(losses[-1]))


def test_stylize_with_and_without_winograd(params, monkeypatch):
    """VGG's wide layers by Winograd (the CPU default) or directly: the same optimization.

    Up to relu3_1, conv2_2 (128 -> 128) and conv3_1 (128 -> 256) qualify: ``prepare``
    transforms their kernels (and their transposes) (``features`` uses them: its test)."""
    from cnn_jax.style import fast_vgg

    transformed = []

    def counting(kernel):
        transformed.append(kernel.shape)
        return ops.winograd_transforms(kernel)

    monkeypatch.setattr(fast_vgg, "winograd_transforms", counting)
    weights = style.StyleWeights(content_layers=("relu3_1",), style_layers=("relu1_1", "relu3_1"))
    run = functools.partial(
        style.stylize,
        params,
        _image(1),
        _image(2),
        weights=weights,
        steps=4,
        optimizer="adam",
        learning_rate=0.05,
        init="content",
    )
    assert jax.default_backend() == "cpu"
    img_w, losses_w = run()
    assert sorted(transformed) == [(3, 3, 128, 128), (3, 3, 128, 256)]
    img_d, losses_d = run(winograd=False)
    assert len(transformed) == 2
    np.testing.assert_allclose(losses_w, losses_d, rtol=1e-4)
    np.testing.assert_allclose(img_w, img_d, atol=1e-4)
    with pytest.raises(TypeError, match="`winograd` must be a bool or None, got 'yes'"):
        run(winograd="yes")


def test_stylize_bad_arguments(params):
    c = _image(1)
    deep = style.StyleWeights()
    with pytest.raises(ValueError, match="too small for the chosen layers"):
        style.stylize(params, _image(1, 8, 8), c, weights=deep, steps=1, init="content")
    with pytest.raises(ValueError, match="optimizer"):
        style.stylize(params, c, c, weights=SHALLOW, steps=1, optimizer="sgd")
    with pytest.raises(ValueError, match="steps"):
        style.stylize(params, c, c, weights=SHALLOW, steps=0)
    with pytest.raises(ValueError, match="key"):
        style.stylize(params, c, c, weights=SHALLOW, steps=1, init="noise")
    with pytest.raises(ValueError, match="init"):
        style.stylize(params, c, c, weights=SHALLOW, steps=1, init="zeros")
    with pytest.raises(ValueError, match="style_layers"):
        style.StyleWeights(style_layers=("relu9_1",))
    with pytest.raises(ValueError, match="beta"):
        style.StyleWeights(beta=-1.0)


def test_colour_preservation_keeps_content_chroma():
    from cnn_jax.style.transfer import rgb_to_yiq

    c, s = _image(1) * 0.5 + 0.25, _image(2) * 0.2 + 0.4
    grey = style.match_luminance(s, c)
    np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-6)
    np.testing.assert_allclose(grey[..., 0].mean(), rgb_to_yiq(c)[..., 0].mean(), atol=1e-5)
    out = style.preserve_colour(grey, c)
    inside = np.all((out > 0) & (out < 1), axis=-1)  # pixels the [0, 1] clip left alone
    assert inside.mean() > 0.5
    got, want = rgb_to_yiq(out)[inside], rgb_to_yiq(c)[inside]
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], atol=1e-4)
    np.testing.assert_allclose(got[:, 0], rgb_to_yiq(grey)[inside][:, 0], atol=1e-4)


def test_image_io_errors(tmp_path):
    bad = tmp_path / "a.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"a\.jpg"):
        style.load_image(bad)
    with pytest.raises(FileNotFoundError):
        style.load_image(tmp_path / "none.png")
    path = tmp_path / "x.png"
    style.save_image(path, _image(1, 5, 7))
    back = style.load_image(path)
    assert back.shape == (5, 7, 3)
    np.testing.assert_allclose(back, _image(1, 5, 7), atol=1 / 255)
    assert style.load_image(path, max_size=14).shape == (10, 14, 3)
