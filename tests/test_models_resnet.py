"""ResNet v1 (torchvision), CIFAR ResNets, ResNet v2 (Keras) and DenseNet (torchvision)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnn_jax import weights
from cnn_jax.models import densenet, resnet
from tests import torch_oracle

# Parameters (the ``params`` collection) with 1000 classes (10 for the CIFAR nets).
# torchvision: its documented ``num_params``; Keras: its trainable weights (its
# ``count_params`` adds the batch-norm statistics, checked in test_keras_counts); CIFAR:
# the 0.27M / 0.46M / 0.66M / 0.85M / 1.7M of He et al. 2015, Table 6.
PARAMS = {
    "resnet18": (resnet.ResNet18, 11_689_512),
    "resnet34": (resnet.ResNet34, 21_797_672),
    "resnet50": (resnet.ResNet50, 25_557_032),
    "resnet101": (resnet.ResNet101, 44_549_160),
    "resnet152": (resnet.ResNet152, 60_192_808),
    "densenet121": (densenet.DenseNet121, 7_978_856),
    "densenet169": (densenet.DenseNet169, 14_149_480),
    "densenet201": (densenet.DenseNet201, 20_013_928),
    "densenet161": (densenet.DenseNet161, 28_681_000),
    "ResNet50V2": (resnet.ResNet50V2, 25_568_360),
    "ResNet101V2": (resnet.ResNet101V2, 44_577_896),
    "ResNet152V2": (resnet.ResNet152V2, 60_236_904),
    "resnet20": (resnet.ResNet20, 269_722),
    "resnet32": (resnet.ResNet32, 464_154),
    "resnet44": (resnet.ResNet44, 658_586),
    "resnet56": (resnet.ResNet56, 853_018),
    "resnet110": (resnet.ResNet110, 1_727_962),
}
# keras.applications' count_params(): parameters plus batch-norm moving mean/variance.
KERAS_TOTALS = {"ResNet50V2": 25_613_800, "ResNet101V2": 44_675_560, "ResNet152V2": 60_380_648}
TORCHVISION = [*resnet.TORCHVISION_SPECS, *densenet.TORCHVISION_SPECS]


def _template(model, size=224, batch=1):
    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def _count(tree) -> int:
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))


def _spec(name):
    return {**resnet.TORCHVISION_SPECS, **densenet.TORCHVISION_SPECS}[name]


# Compiling is most of these tests' time: XLA's backend optimizations double it on CPU,
# and threefry random bits take ~1 s per call site, so the tests compile without them
# and draw from numpy or the RngBitGenerator.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _key(seed):
    return jax.random.key(seed, impl="rbg")


def _normal(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


DEFAULT = {"resnet18", "resnet50", "densenet121", "ResNet50V2", "resnet20", "resnet56"}


def _slow_unless_default(names):
    return [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in names]


SMALL_DENSENET = functools.partial(
    densenet.DenseNet, growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2
)


@pytest.mark.parametrize("name", _slow_unless_default(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert _count(_template(make(), 64)["params"]) == expected  # any input size


@pytest.mark.parametrize("name", _slow_unless_default(KERAS_TOTALS))
def test_keras_counts(name):
    v = _template(resnet.KERAS_SPECS[name].model(), 64)
    assert _count(v["params"]) + _count(v["batch_stats"]) == KERAS_TOTALS[name]


def _torch_shapes(name, key_fn):
    """Our variables as torchvision's ``{key: shape}`` by the spec's key function."""
    leaf = {"kernel": "weight", "bias": "bias", "scale": "weight"}
    leaf |= {"mean": "running_mean", "var": "running_var"}
    out = {}
    for (_, *path, name_), v in traverse_util.flatten_dict(
        _template(_spec(name).model(), 64)
    ).items():
        shape = tuple(v.shape)
        if name_ == "kernel":  # (H, W, I, O) -> (O, I, H, W); (I, O) -> (O, I)
            shape = shape[::-1] if len(shape) == 2 else (shape[3], shape[2], *shape[:2])
        out[f"{key_fn(tuple(path))}.{leaf[name_]}"] = shape
    return out


@pytest.mark.parametrize("name", _slow_unless_default(TORCHVISION))
def test_names_and_shapes_match_torchvision(name):
    """Every torchvision tensor has our counterpart of the same shape, by the spec's key."""
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
    assert _torch_shapes(name, spec.key_fn or weights.default_torch_key) == theirs
    assert PARAMS[name][1] == sum(p.numel() for p in net.parameters())


def test_specs():
    assert set(resnet.TORCHVISION_SPECS) == {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    assert set(densenet.TORCHVISION_SPECS) == {f"densenet{d}" for d in (121, 161, 169, 201)}
    assert set(resnet.KERAS_SPECS) == set(KERAS_TOTALS)
    for spec in resnet.KERAS_SPECS.values():
        assert spec.key_fn is None and spec.input_size == 224
    assert densenet.torch_key(("features_denseblock2", "denselayer10", "norm1")) == (
        "features.denseblock2.denselayer10.norm1"
    )
    assert weights.default_torch_key(("layer3_0", "downsample_1")) == "layer3.0.downsample.1"


def test_densenet_legacy_keys():
    """torchvision's published DenseNet files spell ``norm1`` as ``norm.1``."""
    old = {
        "features.denseblock1.denselayer1.norm.1.weight": 1,
        "features.denseblock1.denselayer12.conv.2.weight": 2,
        "features.transition1.norm.weight": 3,
        "features.norm5.running_var": 4,
    }
    assert densenet.rename_legacy_torch_keys(old) == {
        "features.denseblock1.denselayer1.norm1.weight": 1,
        "features.denseblock1.denselayer12.conv2.weight": 2,
        "features.transition1.norm.weight": 3,
        "features.norm5.running_var": 4,
    }


# --- shapes, features, initialization ------------------------------------------------


def _shapes(model, size, batch=2):
    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    (logits, f), _ = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x))
    return logits.shape, {k: v.shape for k, v in f.items()}


@pytest.mark.slow
def test_feature_shapes_at_224():
    _, f = _shapes(resnet.ResNet50(), 224, batch=1)
    assert f["stem"] == (1, 56, 56, 64) and f["layer4"] == (1, 7, 7, 2048)
    assert f["pre_logits"] == (1, 2048)
    _, f = _shapes(resnet.ResNet50V2(), 224, batch=1)
    assert f["stem"] == (1, 56, 56, 64) and f["conv5"] == (1, 7, 7, 2048)
    _, f = _shapes(densenet.DenseNet161(), 224, batch=1)
    assert f["stem"] == (1, 56, 56, 96) and f["denseblock4"] == (1, 7, 7, 2208)


def test_feature_shapes():
    logits, f = _shapes(resnet.ResNet18(num_classes=7), 64)
    assert logits == (2, 7)
    assert f == {
        "stem": (2, 16, 16, 64),
        "layer1": (2, 16, 16, 64),
        "layer2": (2, 8, 8, 128),
        "layer3": (2, 4, 4, 256),
        "layer4": (2, 2, 2, 512),
        "pre_logits": (2, 512),
    }
    _, f = _shapes(resnet.ResNet20(), 32)
    assert f == {
        "stem": (2, 32, 32, 16),
        "layer1": (2, 32, 32, 16),
        "layer2": (2, 16, 16, 32),
        "layer3": (2, 8, 8, 64),
        "pre_logits": (2, 64),
    }
    logits, f = _shapes(resnet.ResNet50V2(num_classes=5), 64)
    assert logits == (2, 5)
    assert f == {  # the last stage keeps the resolution (Keras' stride1=1)
        "stem": (2, 16, 16, 64),
        "conv2": (2, 8, 8, 256),
        "conv3": (2, 4, 4, 512),
        "conv4": (2, 2, 2, 1024),
        "conv5": (2, 2, 2, 2048),
        "post": (2, 2, 2, 2048),
        "pre_logits": (2, 2048),
    }
    logits, f = _shapes(densenet.DenseNet121(num_classes=3), 64)
    assert logits == (2, 3)
    assert f == {
        "stem": (2, 16, 16, 64),
        "denseblock1": (2, 16, 16, 64 + 6 * 32),
        "transition1": (2, 8, 8, 128),
        "denseblock2": (2, 8, 8, 128 + 12 * 32),
        "transition2": (2, 4, 4, 256),
        "denseblock3": (2, 4, 4, 256 + 24 * 32),
        "transition3": (2, 2, 2, 512),
        "denseblock4": (2, 2, 2, 1024),
        "norm5": (2, 2, 2, 1024),
        "pre_logits": (2, 1024),
    }


def test_dtype():
    for model in (resnet.ResNet20(dtype=jnp.bfloat16), SMALL_DENSENET(dtype=jnp.bfloat16)):
        logits, _ = jax.eval_shape(
            lambda m=model: m.init_with_output(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
        )[0]
        assert logits.dtype == jnp.bfloat16


def _init(model, size, key=0, batch=1):
    return _jit(model.init)(_key(key), jnp.zeros((batch, size, size, 3)))


def _random_variables(model, size, seed=0):
    """He-normal kernels, zero biases, unit norms: cheaper than compiling ``init``."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return (rng.standard_normal(leaf.shape) * np.sqrt(2 / fan_in)).astype(np.float32)
        return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)

    return jax.tree_util.tree_map_with_path(fill, _template(model, size))


def _std_ratio(kernel, fan):
    return float(np.std(kernel)) / np.sqrt(2.0 / fan)


def test_initialization():
    """torchvision: Kaiming normal (ResNet fan_out, DenseNet fan_in), BN 1/0, Linear
    default; Keras: Glorot uniform, zero biases."""
    p = _init(resnet.ResNet(stage_sizes=(1, 1), num_classes=10), 32)["params"]
    assert abs(_std_ratio(p["layer1_0"]["conv1"]["kernel"], 9 * 64) - 1) < 0.03
    assert abs(_std_ratio(p["layer2_0"]["downsample_0"]["kernel"], 128) - 1) < 0.03
    np.testing.assert_array_equal(p["layer1_0"]["bn2"]["scale"], 1.0)
    np.testing.assert_array_equal(p["bn1"]["bias"], 0.0)
    bound = 1 / np.sqrt(128)  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias too
    for leaf in ("kernel", "bias"):
        m = float(np.max(np.abs(p["fc"][leaf])))
        assert 0.7 * bound < m <= bound, leaf
    d = _init(densenet.DenseNet(growth_rate=32, block_config=(2, 2), num_classes=10), 32)
    p = d["params"]
    k = p["features_denseblock1"]["denselayer2"]["conv1"]["kernel"]  # (1, 1, 96, 128)
    assert abs(_std_ratio(k, 96) - 1) < 0.03
    np.testing.assert_array_equal(p["classifier"]["bias"], 0.0)
    np.testing.assert_array_equal(d["batch_stats"]["features_norm5"]["var"], 1.0)
    p = _init(resnet.ResNetV2(stage_sizes=(2,), num_classes=10), 32)["params"]
    k = p["conv2_block1"]["conv2_block1_2_conv"]["kernel"]  # (3, 3, 64, 64)
    limit = np.sqrt(6 / (9 * 64 + 9 * 64))
    assert 0.95 * limit < float(np.max(np.abs(k))) <= limit
    np.testing.assert_array_equal(p["conv1_conv"]["bias"], 0.0)
    assert "bias" not in p["conv2_block1"]["conv2_block1_1_conv"]
    assert "bias" in p["conv2_block1"]["conv2_block1_0_conv"]


def test_zero_init_residual():
    """The last norm of every block starts at scale 0: each block is then the identity
    (after the ReLU), or the shortcut alone where the shape changes."""
    model = resnet.ResNet(stage_sizes=(1, 1), width=8, num_classes=10, zero_init_residual=True)
    x = _normal((2, 32, 32, 3), 1)
    variables = _init(model, 32)
    p = variables["params"]
    for block in ("layer1_0", "layer2_0"):
        np.testing.assert_array_equal(p[block]["bn2"]["scale"], 0.0)
        np.testing.assert_array_equal(p[block]["bn1"]["scale"], 1.0)
    _, f = _jit(model.apply)(variables, x)
    np.testing.assert_array_equal(f["layer1"], f["stem"])
    h = np.maximum(_normal((2, 8, 8, 16), 2), 0)
    block = resnet.Bottleneck(4, zero_init_residual=True)
    v = _jit(block.init)(_key(0), h)
    np.testing.assert_array_equal(v["params"]["bn3"]["scale"], 0.0)
    np.testing.assert_array_equal(v["params"]["bn2"]["scale"], 1.0)
    np.testing.assert_array_equal(_jit(block.apply)(v, h), h)


def test_cifar_option_a_shortcut():
    """Option A: the shortcut is the identity subsampled by 2 and zero-padded with the
    new channels, half on each side; it has no parameters."""
    block = resnet.BasicBlock(16, strides=2, shortcut="A", zero_init_residual=True)
    x = np.maximum(_normal((2, 7, 7, 8), 0), 0)
    variables = _jit(block.init)(_key(1), x)
    assert "downsample_0" not in variables["params"]
    expected = np.pad(x[:, ::2, ::2], ((0, 0), (0, 0), (0, 0), (4, 4)))
    np.testing.assert_array_equal(_jit(block.apply)(variables, x), expected)

    a = _template(resnet.ResNet20(), 32)["params"]
    b = _template(resnet.ResNet20(shortcut="B"), 32)["params"]
    assert all("downsample_0" not in a[k] for k in a if k.startswith("layer"))
    assert set(b["layer2_0"]) >= {"downsample_0", "downsample_1"}
    assert "downsample_0" not in b["layer2_1"]
    # the 1x1 projections and their norms: 16*32 + 2*32 + 32*64 + 2*64
    assert _count(b) - _count(a) == 16 * 32 + 64 + 32 * 64 + 128


def test_bad_arguments():
    with pytest.raises(ValueError, match="stage_sizes"):
        resnet.ResNet(stage_sizes=())
    with pytest.raises(ValueError, match="stage_sizes"):
        resnet.ResNetV2(stage_sizes=(3, 0))
    with pytest.raises(ValueError, match="num_classes"):
        resnet.ResNet18(num_classes=0)
    with pytest.raises(ValueError, match="width"):
        resnet.ResNet50V2(width=2.5)
    with pytest.raises(ValueError, match="shortcut"):
        resnet.ResNet20(shortcut="C")
    with pytest.raises(ValueError, match="shortcut"):
        resnet.BasicBlock(8, shortcut="b")
    with pytest.raises(ValueError, match="widths"):
        resnet.ResNetCifar(stage_sizes=(3, 3, 3), widths=(16, 32))
    with pytest.raises(ValueError, match="growth_rate"):
        densenet.DenseNet(growth_rate=0)
    with pytest.raises(ValueError, match="block_config"):
        densenet.DenseNet(block_config=[6, "12"])
    with pytest.raises(ValueError, match="drop_rate"):
        densenet.DenseNet121(drop_rate=1.0)
    for model in (
        resnet.ResNet18(),
        resnet.ResNet20(),
        resnet.ResNet50V2(),
        densenet.DenseNet121(),
    ):
        with pytest.raises(ValueError, match=r"`x`.*\(32, 32, 3\)"):
            model.init(jax.random.key(0), jnp.zeros((32, 32, 3)))
    block = resnet.PreActBottleneck(4)
    with pytest.raises(ValueError, match="name"):
        block.init(jax.random.key(0), jnp.zeros((1, 8, 8, 16)))


# --- training --------------------------------------------------------------------------


def _loss(model, variables, x, y, train, key):
    mutable = ["batch_stats"] if train else False
    out = model.apply(variables, x, train=train, rngs={"dropout": key}, mutable=mutable)
    (logits, _), updates = out if train else (out, {})
    onehot = jax.nn.one_hot(y, logits.shape[-1])
    return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1)), updates


def _train(model, variables, x, y, lr, steps=2):
    """A few SGD steps in training mode; returns (train losses, first grads, variables)."""

    @_jit
    def step(variables, key):
        def f(params):
            return _loss(model, {**variables, "params": params}, x, y, True, key)

        (loss, updates), grads = jax.value_and_grad(f, has_aux=True)(variables["params"])
        params = jax.tree.map(lambda p, g: p - lr * g, variables["params"], grads)
        return {**variables, **updates, "params": params}, grads, loss

    losses, first = [], None
    for i in range(steps):
        variables, grads, loss = step(variables, _key(i))
        losses.append(float(loss))
        first = grads if first is None else first
    return losses, first, variables


def _check_training(model, size, lr=0.01):
    x = _normal((2, size, size, 3), 1)
    y = jnp.array([3, 7])
    variables = _random_variables(model, size)
    losses, grads, trained = _train(model, variables, x, y, lr)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    for path, g in traverse_util.flatten_dict(grads, sep="/").items():
        assert np.all(np.isfinite(g)), path
        if path.endswith("kernel"):
            assert np.any(g != 0), path
    # the running statistics moved
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(trained["batch_stats"])
    assert all(not np.allclose(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize(
    ("make", "size"),
    [(resnet.ResNet18, 32), (resnet.ResNet20, 32), (SMALL_DENSENET, 32)],
    ids=["resnet18", "resnet20", "densenet_small"],
)
def test_forward_and_train_step(make, size):
    _check_training(make(num_classes=10), size)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "size"),
    [
        (resnet.ResNet50V2, 32),
        (densenet.DenseNet121, 32),
        (resnet.ResNet50, 32),
        (functools.partial(resnet.ResNetV2, stage_sizes=(3, 2), width=16), 32),
    ],
    ids=["resnet50v2", "densenet121", "resnet50", "resnetv2_small"],
)
def test_forward_and_train_step_slow(make, size):
    _check_training(make(num_classes=10), size)


def test_densenet_dropout():
    model = SMALL_DENSENET(num_classes=10, drop_rate=0.5)
    x = _normal((2, 16, 16, 3), 1)
    variables = _random_variables(model, 16)

    @_jit
    def run(variables, key):
        def train(m):
            out = m.apply(variables, x, True, rngs={"dropout": key}, mutable=["batch_stats"])
            return out[0][0]

        return model.apply(variables, x)[0], train(model), train(SMALL_DENSENET(num_classes=10))

    evaluated, dropped, kept = run(variables, _key(2))
    evaluated2, dropped2, _ = run(variables, _key(3))
    assert not np.allclose(dropped, kept) and not np.allclose(dropped, dropped2)
    np.testing.assert_array_equal(evaluated, evaluated2)  # no dropout in evaluation


# --- torchvision weights ---------------------------------------------------------------


def _torch_net(name, seed=0):
    """A torchvision model with random non-trivial batch-norm parameters and statistics."""
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
            elif isinstance(m, torch.nn.Linear):
                m.bias.uniform_(-0.05, 0.05)
    return net.eval()


def _torch_logits(net, x):
    torch = torch_oracle.torch()
    with torch.no_grad():
        return net(torch.from_numpy(np.array(x).transpose(0, 3, 1, 2))).numpy()


def _close(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    err = np.max(np.abs(ours - theirs))
    assert err <= 1e-4 * np.max(np.abs(theirs)), err


def _check_torchvision(name, size):
    """torchvision -> ours gives its logits; ours -> torchvision loads strictly and too."""
    torch = torch_oracle.torch()
    spec = _spec(name)
    model = spec.model()
    x = _normal((2, size, size, 3), 3)
    net = _torch_net(name)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    kw = dict(key_fn=spec.key_fn, transforms=spec.transforms)
    variables = weights.from_torch(sd, _template(model, size), **kw)
    forward = _jit(lambda v: model.apply(v, x)[0])
    _close(forward(variables), _torch_logits(net, x))

    back = weights.to_torch(variables, **kw)
    assert back.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)

    # Other weights exported into a fresh torchvision model (strict) give its logits.
    other = jax.tree.map(lambda v: np.asarray(v) * np.float32(0.9), variables)
    fresh = _torch_net(name, seed=1)
    exported = weights.to_torch(other, **kw)
    fresh.load_state_dict({k: torch.tensor(np.array(v)) for k, v in exported.items()}, strict=True)
    _close(forward(other), _torch_logits(fresh, x))


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_torchvision_weights(name):
    _check_torchvision(name, 64)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size"),
    [("resnet18", 224), ("resnet50", 224), ("densenet121", 224)]
    + [(n, 64) for n in ("resnet34", "resnet101", "resnet152")]
    + [(n, 64) for n in ("densenet161", "densenet169", "densenet201")],
)
def test_torchvision_weights_slow(name, size):
    _check_torchvision(name, size)


def test_mismatched_state_dict_lists_the_keys():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in tv.models.resnet18().state_dict().items()}
    sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    template = _template(resnet.ResNet18(), 64)
    weights.from_torch(sd, template)  # fits

    missing = dict(sd)
    del missing["layer2.0.downsample.1.running_var"]
    with pytest.raises(
        weights.WeightMismatchError, match=r"missing[\s\S]*layer2\.0\.downsample\.1\.running_var"
    ):
        weights.from_torch(missing, template)
    wrong = {**sd, "fc.weight": np.zeros((10, 512), np.float32)}
    with pytest.raises(weights.WeightMismatchError, match=r"fc\.weight: \(10, 512\)"):
        weights.from_torch(wrong, template)
    with pytest.raises(  # BasicBlock weights for a Bottleneck network
        weights.WeightMismatchError,
        match=r"missing[\s\S]*layer1\.0\.bn3\.running_mean[\s\S]*fc\.weight: \(1000, 512\)",
    ):
        weights.from_torch(sd, _template(resnet.ResNet50(), 64))
    with pytest.raises(
        weights.WeightMismatchError,
        match=r"missing from the PyTorch weights \(606\)[\s\S]*not used[\s\S]*layer1",
    ):
        weights.from_torch(sd, _template(densenet.DenseNet121(), 64), key_fn=densenet.torch_key)


# --- Keras weights ---------------------------------------------------------------------


def _randomize_keras_bn(model, keras, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, g.shape),
                    rng.uniform(-0.2, 0.2, b.shape),
                    rng.uniform(-0.2, 0.2, m.shape),
                    rng.uniform(0.5, 2.0, v.shape),
                ]
            )


def _check_keras(keras_model, ours, size, tmp_path):
    """Keras' weights, saved as .weights.h5 and as legacy .h5, give Keras' logits."""
    keras = torch_oracle.keras()
    _randomize_keras_bn(keras_model, keras)
    x = _normal((2, size, size, 3), 3)
    expected = keras_model.predict(x, verbose=0)  # compiled: faster than eager
    new = tmp_path / "model.weights.h5"
    keras_model.save_weights(new)
    paths = [new]
    try:
        import h5py
        from keras.src.legacy.saving import legacy_h5_format
    except ImportError:  # pragma: no cover - depends on the Keras version
        pass
    else:
        legacy = tmp_path / "model.h5"
        with h5py.File(legacy, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, keras_model)
        paths.append(legacy)
    template = _template(ours, size)
    forward = _jit(lambda v: ours.apply(v, x)[0])
    for path in paths:
        variables = weights.from_keras(weights.load_keras_weights(path), template)
        _close(forward(variables), expected)


def test_keras_resnet_v2_small(tmp_path):
    """A two-stage ResNet v2 built by Keras' own ResNet code: every kind of block of
    ResNet50V2 (projection, strided identity, identity) and its stem and head."""
    keras = torch_oracle.keras()
    kr = pytest.importorskip("keras.src.applications.resnet")

    def stack_fn(x):
        x = kr.stack_residual_blocks_v2(x, 64, 2, name="conv2")
        return kr.stack_residual_blocks_v2(x, 128, 2, stride1=1, name="conv3")

    with jax.threefry_partitionable(False):  # Keras' initializers compile twice as fast
        net = kr.ResNet(
            stack_fn,
            True,
            True,
            weights=None,
            input_shape=(32, 32, 3),
            classes=10,
            classifier_activation=None,
            name="small_v2",
        )
    assert isinstance(net, keras.Model)
    ours = resnet.ResNetV2(stage_sizes=(2, 2), num_classes=10)
    assert _count(_template(ours, 32)) == net.count_params()
    _check_keras(net, ours, 32, tmp_path)


@pytest.mark.slow
def test_keras_resnet50v2(tmp_path):
    keras = torch_oracle.keras()
    with jax.threefry_partitionable(False):
        net = keras.applications.ResNet50V2(
            weights=None, input_shape=(64, 64, 3), classifier_activation=None
        )
    ours = resnet.ResNet50V2()
    ours_names = {p[-2] for p in traverse_util.flatten_dict(_template(ours, 64)["params"])}
    assert ours_names == {layer.name for layer in net.layers if layer.weights}
    _check_keras(net, ours, 64, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet101V2", "ResNet152V2"])
def test_keras_counts_and_names(name):
    keras = torch_oracle.keras()
    net = getattr(keras.applications, name)(weights=None)
    assert net.count_params() == KERAS_TOTALS[name]
    v = _template(resnet.KERAS_SPECS[name].model(), 64)
    names = {p[-2] for p in traverse_util.flatten_dict(v["params"])}
    assert names == {layer.name for layer in net.layers if layer.weights}
