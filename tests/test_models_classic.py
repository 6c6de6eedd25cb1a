"""AlexNet (torchvision's and the paper's), ZFNet and VGG: sizes, layers, training, weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnn_jax import weights
from cnn_jax.layers import BatchNorm, local_response_norm
from cnn_jax.models import alexnet, vgg
from cnn_jax.ops import max_pool
from tests import torch_oracle

# Parameters with 1000 classes. torchvision: its documented ``num_params``; the papers'
# networks: computed here (see the module docstring of ``alexnet``).
PARAMS = {
    "alexnet": (alexnet.AlexNet, 61_100_840),
    "alexnet_paper": (alexnet.AlexNetPaper, 60_965_224),
    "alexnet_paper_one_tower": (lambda: alexnet.AlexNetPaper(two_tower=False), 62_378_344),
    "zfnet": (alexnet.ZFNet, 62_357_608),
    "vgg11": (vgg.VGG11, 132_863_336),
    "vgg11_bn": (vgg.VGG11BN, 132_868_840),
    "vgg13": (vgg.VGG13, 133_047_848),
    "vgg13_bn": (vgg.VGG13BN, 133_053_736),
    "vgg16": (vgg.VGG16, 138_357_544),
    "vgg16_bn": (vgg.VGG16BN, 138_365_992),
    "vgg19": (vgg.VGG19, 143_667_240),
    "vgg19_bn": (vgg.VGG19BN, 143_678_248),
}
TORCHVISION = ["alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn"]
TORCHVISION += ["vgg19", "vgg19_bn"]


def _template(model, size=224, batch=1):
    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def _count(tree) -> int:
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))


def _spec(name):
    return {**alexnet.TORCHVISION_SPECS, **vgg.TORCHVISION_SPECS}[name]


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert _count(_template(make())["params"]) == expected


@pytest.mark.parametrize("name", TORCHVISION)
def test_names_and_shapes_match_torchvision(name):
    """Every torchvision tensor has our counterpart of the same size, by the default key."""
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):  # no memory, no initialization
        net = getattr(tv.models, name)()
    theirs = {
        k: tuple(v.shape)
        for k, v in net.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    spec = _spec(name)
    assert spec.export and spec.input_size == 224
    key_fn = spec.key_fn or weights.default_torch_key
    leaf = {"kernel": "weight", "bias": "bias", "scale": "weight"}
    leaf |= {"mean": "running_mean", "var": "running_var"}
    ours = {}
    for (_, *path, name_), v in traverse_util.flatten_dict(_template(spec.model())).items():
        shape = tuple(v.shape)
        if name_ == "kernel":  # (H, W, I, O) -> (O, I, H, W); (I, O) -> (O, I)
            shape = shape[::-1] if len(shape) == 2 else (shape[3], shape[2], *shape[:2])
        ours[f"{key_fn(tuple(path))}.{leaf[name_]}"] = shape
    assert ours == theirs
    assert _count(_template(spec.model())["params"]) == sum(p.numel() for p in net.parameters())


def _shapes(model, size):
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x)[0])
    return {k: tuple(v.shape[1:]) for k, v in out[1].items()}


def test_paper_feature_map_sizes():
    """The sizes of Krizhevsky et al. (Figure 2) and Zeiler & Fergus (Figure 3) at 224."""
    head = {"pooled": (9216,), "fc6": (4096,), "fc7": (4096,), "pre_logits": (4096,)}
    head["logits"] = (1000,)
    assert _shapes(alexnet.AlexNetPaper(), 224) == {
        "conv1": (55, 55, 96),
        "norm1": (55, 55, 96),
        "pool1": (27, 27, 96),
        "conv2": (27, 27, 256),
        "norm2": (27, 27, 256),
        "pool2": (13, 13, 256),
        "conv3": (13, 13, 384),
        "conv4": (13, 13, 384),
        "conv5": (13, 13, 256),
        "pool5": (6, 6, 256),
        **head,
    }
    assert _shapes(alexnet.ZFNet(), 224) == {
        "conv1": (110, 110, 96),
        "pool1": (55, 55, 96),
        "norm1": (55, 55, 96),
        "conv2": (26, 26, 256),
        "pool2": (13, 13, 256),
        "norm2": (13, 13, 256),
        "conv3": (13, 13, 384),
        "conv4": (13, 13, 384),
        "conv5": (13, 13, 256),
        "pool5": (6, 6, 256),
        **head,
    }
    tv = _shapes(alexnet.AlexNet(), 224)
    assert tv["conv1"] == (55, 55, 64) and tv["pool5"] == (6, 6, 256) and "norm1" not in tv
    assert _shapes(alexnet.ZFNet(norm=None), 224).keys() == tv.keys()


def test_vgg_feature_shapes():
    f = _shapes(vgg.VGG16(num_classes=10), 224)
    widths = (64, 128, 256, 512, 512)
    assert f == {
        **{f"block{b + 1}": (224 >> (b + 1), 224 >> (b + 1), w) for b, w in enumerate(widths)},
        "pooled": (25088,),
        "fc6": (4096,),
        "fc7": (4096,),
        "pre_logits": (4096,),
        "logits": (10,),
    }
    small = _shapes(vgg.VGG11BN(num_classes=10), 32)  # 1x1 after the last pool, 7x7 adaptive
    assert small["block5"] == (1, 1, 512) and small["pooled"] == (25088,)


def _random_variables(model, size, seed=0, stds=None):
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

    return jax.tree_util.tree_map_with_path(fill, _template(model, size))


def test_injected_norm_and_dtype():
    """A BatchNorm injected into AlexNet (after every conv) and into the paper's network
    (one per tower); bfloat16 computation."""
    x = jnp.zeros((2, 64, 64, 3))

    def run(model, x=x):
        def f():
            v = model.init(jax.random.key(0), x)
            (logits, _), upd = model.apply(
                v, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]
            )
            return v, logits, upd

        return jax.eval_shape(f)

    v, _, upd = run(alexnet.AlexNet(norm=BatchNorm, num_classes=10))
    assert sorted(v["batch_stats"]) == [f"norm{i}" for i in range(1, 6)]
    assert upd["batch_stats"]["norm2"]["mean"].shape == (192,)
    v, _, _ = run(alexnet.AlexNetPaper(norm=BatchNorm, num_classes=10))
    assert sorted(v["batch_stats"]) == ["norm1_0", "norm1_1", "norm2_0", "norm2_1"]
    assert v["params"]["norm1_1"]["scale"].shape == (48,)  # each GPU's half of conv1
    assert v["params"]["norm2_1"]["scale"].shape == (128,)
    v, _, _ = run(alexnet.AlexNetPaper(norm=BatchNorm, num_classes=10, two_tower=False))
    assert sorted(v["batch_stats"]) == ["norm1", "norm2"]
    assert "batch_stats" not in run(alexnet.ZFNet(norm=None))[0]

    for model, size in [
        (alexnet.AlexNet(dtype=jnp.bfloat16), 64),
        (alexnet.AlexNetPaper(dtype=jnp.bfloat16), 64),
        (vgg.VGG11BN(dtype=jnp.bfloat16), 32),
    ]:
        v, logits, _ = run(model, jnp.zeros((2, size, size, 3)))
        assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 1000)
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v))


def test_two_towers_and_normalization_placement():
    """Grouped conv2/4/5 and per-tower LRN after conv1 and conv2 (paper, Section 3.2-3.3:
    each GPU holds half of every layer's maps); ZFNet normalizes after pooling (Figure 3)."""
    shapes = jax.tree.map(lambda v: v.shape, _template(alexnet.AlexNetPaper(), 64)["params"])
    assert shapes["conv2"]["kernel"] == (5, 5, 48, 256)
    assert shapes["conv3"]["kernel"] == (3, 3, 256, 384)
    assert shapes["conv4"]["kernel"] == (3, 3, 192, 384)
    assert shapes["conv5"]["kernel"] == (3, 3, 192, 256)
    one = jax.tree.map(lambda v: v.shape, _template(alexnet.AlexNetPaper(two_tower=False), 64))
    assert one["params"]["conv4"]["kernel"] == (3, 3, 384, 384)

    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3)) * 50
    model = alexnet.AlexNetPaper(num_classes=10)
    _, f = jax.jit(model.apply)(_random_variables(model, 64), x)
    lrn = local_response_norm
    for name, half in (("1", 48), ("2", 128)):  # conv1's 96 maps too are 48 per GPU
        h = f[f"conv{name}"]
        towers = jnp.concatenate([lrn(h[..., :half]), lrn(h[..., half:])], axis=-1)
        np.testing.assert_allclose(f[f"norm{name}"], towers, rtol=1e-6)
        assert not np.allclose(f[f"norm{name}"], lrn(h), rtol=1e-6)  # the towers matter
    one = alexnet.AlexNetPaper(num_classes=10, two_tower=False)
    _, f1 = jax.jit(one.apply)(_random_variables(one, 64), x)
    for name in ("1", "2"):
        np.testing.assert_allclose(f1[f"norm{name}"], lrn(f1[f"conv{name}"]), rtol=1e-6)
    np.testing.assert_array_equal(f["pool2"], max_pool(f["norm2"], 3, 2))

    zf = alexnet.ZFNet(num_classes=10)
    _, g = jax.jit(zf.apply)(_random_variables(zf, 64), x)
    np.testing.assert_array_equal(g["pool1"], max_pool(g["conv1"], 3, 2, ceil_mode=True))
    np.testing.assert_allclose(g["norm1"], lrn(g["pool1"]), rtol=1e-6)


def _init(model, size, key=0, keep=None):
    """Initializes under jit; ``keep`` picks leaves (the others' random draws are then
    dead code, never computed). An 'rbg' key: XLA compiles its draws several times
    faster than threefry's on CPU; the distributions are the same."""
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    keep = keep or (lambda v: v)
    return jax.jit(lambda k: keep(model.init(k, x)))(jax.random.key(key, impl="rbg"))


def test_paper_initialization():
    """N(0, 0.01) weights; biases 1 in conv2/4/5 and fc6/7 (Krizhevsky et al., Section 5),
    all 0 in ZFNet (Zeiler & Fergus, Section 3)."""
    convs = [f"conv{i}" for i in range(1, 6)]

    def keep(v):  # biases and the small kernels only
        p = v["params"]
        return {n: p[n] if n in (*convs, "fc8") else {"bias": p[n]["bias"]} for n in p}

    p = _init(alexnet.AlexNetPaper(num_classes=10), 64, keep=keep)
    for name in (*convs, "fc8"):
        assert abs(float(jnp.std(p[name]["kernel"])) - 0.01) < 1e-3, name
    for name in (*convs, "fc6", "fc7", "fc8"):
        expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        np.testing.assert_array_equal(p[name]["bias"], expected, err_msg=name)
    z = _init(alexnet.ZFNet(num_classes=10), 64, keep=keep)
    assert sorted(z) == [*convs, "fc6", "fc7", "fc8"]
    assert all(not np.any(z[n]["bias"]) for n in z)
    assert abs(float(jnp.std(z["conv2"]["kernel"])) - 0.01) < 1e-3


def _loss(model, variables, x, y, train, key):
    mutable = ["batch_stats"] if "batch_stats" in variables else False
    out = model.apply(variables, x, train=train, rngs={"dropout": key}, mutable=mutable)
    (logits, features), updates = out if mutable else (out, {})
    onehot = jax.nn.one_hot(y, logits.shape[-1])
    loss = -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1))
    return loss, (updates, features)


def _train(model, variables, x, y, lr, steps=3):
    """SGD steps in training mode. Returns the evaluation loss before and after, the
    training losses, the first gradients and the evaluation features before."""

    @jax.jit
    def step(variables, key):
        def f(params):
            return _loss(model, {**variables, "params": params}, x, y, True, key)

        (loss, (updates, _)), grads = jax.value_and_grad(f, has_aux=True)(variables["params"])
        params = jax.tree.map(lambda p, g: p - lr * g, variables["params"], grads)
        return {**variables, **updates, "params": params}, grads, loss

    @jax.jit
    def evaluate(variables):
        loss, (_, features) = _loss(model, variables, x, y, False, jax.random.key(0))
        return loss, features

    before, features = evaluate(variables)
    losses, first = [], None
    for i in range(steps):
        variables, grads, loss = step(variables, jax.random.key(i))
        losses.append(float(loss))
        first = grads if first is None else first
    return float(before), float(evaluate(variables)[0]), losses, first, features


@pytest.mark.parametrize(
    ("make", "size", "lr"),
    [
        (alexnet.AlexNet, 64, 0.01),
        pytest.param(vgg.VGG11, 32, 0.01, marks=pytest.mark.slow),  # 19 s on 2 cores
    ],
    ids=["alexnet", "vgg11"],
)
def test_forward_and_train_step(make, size, lr):
    model = make(num_classes=10)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    y = jnp.array([3, 7])

    # torchvision's scales (``test_torchvision_initialization`` checks the real init).
    def stds(path, shape):
        if len(shape) == 2:
            return 0.01 if make is vgg.VGG11 else np.sqrt(1 / (3 * shape[0]))
        fan = np.prod(shape[:2]) * shape[3] if make is vgg.VGG11 else np.prod(shape[:-1])
        return np.sqrt(2 / fan) if make is vgg.VGG11 else np.sqrt(1 / (3 * fan))

    variables = _random_variables(model, size, stds=stds)
    before, after, losses, grads, f = _train(model, variables, x, y, lr, steps=1)
    assert f["logits"].shape == (2, 10) and f["pre_logits"].shape == (2, 4096)
    assert f["pooled"].shape == (2, 256 * 36 if make is alexnet.AlexNet else 512 * 49)
    assert np.all(np.isfinite(losses)) and losses[0] != before  # dropout in training only
    for path, g in traverse_util.flatten_dict(grads, sep="/").items():
        assert np.all(np.isfinite(g)), path
        if path.endswith("kernel"):
            assert np.any(g != 0), path
    assert after < before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "lr"),
    [(alexnet.AlexNetPaper, 3e-4), (alexnet.ZFNet, 1e-3), (vgg.VGG11BN, 1e-2)],
    ids=["paper", "zfnet", "vgg11bn"],
)
def test_train_step_slow(make, lr):
    """Their own initialization; plain SGD on one batch (the papers' N(0, 0.01) with
    biases 1 needs a small rate without momentum); no dropout, so the training-mode
    losses (batch statistics) are comparable."""
    model = make(num_classes=10, dropout=0.0)
    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    _, _, losses, _, _ = _train(model, _init(model, 64), x, jnp.array([3, 7]), lr, steps=5)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_torchvision_initialization():
    """torchvision's init: AlexNet PyTorch defaults; VGG Kaiming fan_out, N(0, 0.01)."""

    def keep_alexnet(v):
        p = v["params"]
        return {"k": p["features_3"]["kernel"], "b": p["classifier_4"]["bias"]}

    a = _init(alexnet.AlexNet(num_classes=10), 64, keep=keep_alexnet)
    bound = 1 / np.sqrt(5 * 5 * 64)  # (5, 5, 64, 192): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert 0.95 * bound < float(jnp.max(jnp.abs(a["k"]))) <= bound
    assert 0.95 / 64 < float(jnp.max(jnp.abs(a["b"]))) <= 1 / 64

    def keep_vgg(v):
        p = v["params"]
        return {
            "conv": p["features_4"],
            "bn": p["features_5"],
            "var": v["batch_stats"]["features_5"]["var"],
            "fc": p["classifier_6"],
            "b0": p["classifier_0"]["bias"],
        }

    v = _init(vgg.VGG11BN(num_classes=10), 32, keep=keep_vgg)
    k = v["conv"]["kernel"]  # (3, 3, 64, 128): std sqrt(2 / fan_out)
    assert k.shape == (3, 3, 64, 128)
    assert abs(float(jnp.std(k)) / np.sqrt(2 / (9 * 128)) - 1) < 0.02
    assert abs(float(jnp.std(v["fc"]["kernel"])) - 0.01) < 5e-4
    assert not np.any(v["conv"]["bias"]) and not np.any(v["b0"]) and not np.any(v["fc"]["bias"])
    np.testing.assert_array_equal(v["bn"]["scale"], 1.0)
    np.testing.assert_array_equal(v["bn"]["bias"], 0.0)
    np.testing.assert_array_equal(v["var"], 1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        alexnet.AlexNet(num_classes=0)
    with pytest.raises(ValueError, match="dropout"):
        alexnet.ZFNet(dropout=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        vgg.VGG11(num_classes=2.5)
    with pytest.raises(ValueError, match="cfg"):
        vgg.VGG(cfg=(64, "X"))
    with pytest.raises(ValueError, match=r"`x`.*\(2, 62, 62, 3\)"):
        _template(alexnet.AlexNetPaper(), size=62, batch=2)
    with pytest.raises(ValueError, match=r"`x`.*\(1, 16, 16, 3\)"):
        _template(vgg.VGG11(), size=16)
    with pytest.raises(ValueError, match=r"`x`.*\(64, 64, 3\)"):
        alexnet.AlexNet().init(jax.random.key(0), jnp.zeros((64, 64, 3)))
    assert _count(_template(alexnet.ZFNet(), size=63)["params"]) == PARAMS["zfnet"][1]


# --- torchvision weights -------------------------------------------------------------


def _torch_net(name, seed=0):
    """A torchvision model with random non-trivial biases and batch-norm statistics."""
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    torch.manual_seed(seed)
    net = getattr(tv.models, name)()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                m.bias.uniform_(-0.05, 0.05)
    return net.eval()


def _torch_logits(net, x):
    torch = torch_oracle.torch()
    with torch.no_grad():
        return net(torch.from_numpy(np.array(x).transpose(0, 3, 1, 2).copy())).numpy()


def _state(net):
    return {k: v.numpy() for k, v in net.state_dict().items()}


def _close(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) <= 1e-4 * np.max(np.abs(theirs)), np.max(
        np.abs(ours - theirs)
    )


def _check_torchvision(name, size):
    """torchvision -> ours gives its logits and round-trips; weights changed on our side
    load into torchvision strictly and give our logits."""
    torch = torch_oracle.torch()
    spec = _spec(name)
    model = spec.model()
    apply = jax.jit(model.apply)
    x = jax.random.normal(jax.random.key(3), (2, size, size, 3))
    net = _torch_net(name)
    sd = _state(net)
    kw = dict(key_fn=spec.key_fn, transforms=spec.transforms)
    variables = weights.from_torch(sd, _template(model, size), **kw)
    before = _torch_logits(net, x)
    _close(apply(variables, x)[0], before)

    back = weights.to_torch(variables, **kw)
    assert back.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)

    # Other values on our side (shifted along the first axis, so a wrong layout shows).
    ours = jax.tree.map(lambda v: np.roll(v, 1, axis=0), variables)
    net.load_state_dict(
        {k: torch.from_numpy(v) for k, v in weights.to_torch(ours, **kw).items()}, strict=True
    )
    theirs = _torch_logits(net, x)
    _close(apply(ours, x)[0], theirs)
    assert not np.allclose(theirs, before, rtol=1e-2)


@pytest.mark.parametrize(
    ("name", "size"),
    [("alexnet", 64), pytest.param("vgg11_bn", 32, marks=pytest.mark.slow)],  # vgg: 25 s
)
def test_torchvision_weights(name, size):
    _check_torchvision(name, size)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size"),
    [("alexnet", 224), ("vgg11_bn", 224)]
    + [(n, 32) for n in ("vgg11", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")],
)
def test_torchvision_weights_slow(name, size):
    _check_torchvision(name, size)


def test_mismatched_state_dict_lists_the_keys():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    spec = _spec("alexnet")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in tv.models.alexnet().state_dict().items()}
    sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    template = _template(spec.model(), 64)
    kw = dict(key_fn=spec.key_fn, transforms=spec.transforms)
    weights.from_torch(sd, template, **kw)  # fits

    missing = dict(sd)
    del missing["features.3.bias"]
    with pytest.raises(weights.WeightMismatchError, match=r"missing[\s\S]*features\.3\.bias"):
        weights.from_torch(missing, template, **kw)

    wrong = {**sd, "classifier.6.weight": np.zeros((10, 4096), np.float32)}
    with pytest.raises(weights.WeightMismatchError, match=r"classifier\.6\.weight: \(10, 4096\)"):
        weights.from_torch(wrong, template, **kw)

    extra = {**sd, "features.1.weight": np.zeros(3, np.float32)}
    with pytest.raises(weights.WeightMismatchError, match=r"not used[\s\S]*features\.1\.weight"):
        weights.from_torch(extra, template, **kw)
    vgg_template = _template(vgg.VGG11BN(), 32)
    with pytest.raises(weights.WeightMismatchError, match=r"features\.1\.running_mean"):
        weights.from_torch(sd, vgg_template)
