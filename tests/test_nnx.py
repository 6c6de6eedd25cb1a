"""cnn_jax.nnx: the NNX forms of the layers and models against their linen forms."""

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from cnn_jax import layers, models
from cnn_jax import nnx as cnnx

KEY = jax.random.key(0)

#: Constructor args, kwargs and one example's input shape for every linen layer.
LAYER_CASES = {
    "BatchNorm": ((), {}, (4, 4, 3)),
    "Conv": ((4, 3), {"padding": "SAME"}, (5, 5, 3)),
    "ConvTranspose": ((4, 3), {"strides": 2}, (3, 3, 3)),
    "DepthwiseConv": ((3,), {"depth_multiplier": 2}, (5, 5, 3)),
    "DepthwiseSeparableConv": ((4, 3), {}, (5, 5, 3)),
    "GatedActivation": ((), {}, (3, 3, 4)),
    "GroupNorm": ((), {"num_groups": 2}, (3, 3, 4)),
    "InstanceNorm": ((), {}, (3, 3, 3)),
    "LayerNorm": ((), {}, (3, 3, 3)),
    "LocalResponseNorm": ((), {"size": 3}, (3, 3, 5)),
    "LocallyConnected": ((4, 3), {}, (5, 5, 3)),
    "Maxout": ((2,), {}, (3, 3, 4)),
    "PReLU": ((), {}, (3, 3, 3)),
    "TiledConv": ((4, 3), {}, (6, 6, 3)),
    "PrimaryCaps": ((), {"num_maps": 2, "caps_dim": 4, "kernel_size": 3}, (7, 7, 3)),
    "RoutingCaps": ((), {"num_caps": 3, "caps_dim": 4, "num_iterations": 2}, (6, 5)),
}


def _linen_layer_names():
    return {
        name
        for name in layers.__all__
        if isinstance(getattr(layers, name), type) and issubclass(getattr(layers, name), nn.Module)
    }


def _perturb(variables, key=KEY):
    """Every variable moved off its initial value, so that a copy that drops one shows."""
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(key, len(leaves))
    moved = [
        x + 0.1 * jax.random.uniform(k, x.shape, x.dtype, 0.5, 1.5) for x, k in zip(leaves, keys)
    ]
    return jax.tree.unflatten(treedef, moved)


def _shapes(tree):
    return jax.tree.map(jnp.shape, tree)


def _close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5), a, b)


def test_every_linen_layer_and_model_has_a_constructor():
    assert set(LAYER_CASES) == _linen_layer_names() == set(cnnx.LAYER_NAMES)
    model_names = set(models.__all__) - {"MODELS", "get_model", "model_class"}
    assert set(cnnx.MODEL_NAMES) == model_names
    for name in (*cnnx.LAYER_NAMES, *cnnx.MODEL_NAMES):
        assert callable(getattr(cnnx, name)) and name in cnnx.__all__
    assert set(cnnx.DEFAULT_INPUT_SHAPES) <= {models.model_class(n).__name__ for n in models.MODELS}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_matches_linen(name):
    args, kwargs, shape = LAYER_CASES[name]
    module = getattr(layers, name)(*args, **kwargs)
    x = jax.random.normal(jax.random.key(1), (2, *shape))

    # nnx -> linen: the named constructor holds linen's variables, path for path.
    built = getattr(cnnx, name)(*args, input_shape=shape, rngs=nnx.Rngs(0), **kwargs)
    assert built.linen_module == module
    variables = built.linen_variables()
    assert _shapes(variables) == _shapes(jax.eval_shape(module.init, KEY, x))

    # linen -> nnx: the same (moved) weights give the same outputs.
    variables = _perturb(variables)
    bridged = cnnx.bridge(module, variables=variables, rngs=nnx.Rngs(0))
    bridged.eval()
    _close(bridged(x), module.apply(variables, x))
    _close(bridged.linen_variables(), variables)


def test_batch_norm_train_mode_updates_batch_stats_like_linen():
    module = layers.BatchNorm(momentum=0.5)
    x = 3.0 + jax.random.normal(jax.random.key(1), (8, 2, 2, 3))
    variables = _perturb(module.init(KEY, x))
    y, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
    bridged = cnnx.bridge(module, variables=variables, rngs=0)
    assert isinstance(bridged.mean, nnx.BatchStat) and isinstance(bridged.scale, nnx.Param)
    _close(bridged(x), y)  # training mode is the nnx default
    _close(bridged.linen_variables()["batch_stats"], updates["batch_stats"])
    bridged.eval()
    before = bridged.linen_variables()
    _close(bridged(x), module.apply({**variables, **updates}, x))
    _close(bridged.linen_variables(), before)  # evaluation leaves the statistics alone


# Small members of the families: LeNet-5 as published, a ResNet for CIFAR (batch norm),
# CNNMnist (batch norm and dropout), a DenseNet with dropout.
MODEL_CASES = {
    "lenet5": (models.LeNet5, {"num_classes": 4}, (32, 32, 1)),
    "resnet_cifar": (
        models.ResNetCifar,
        {"stage_sizes": (1, 1, 1), "widths": (4, 8, 8), "num_classes": 3},
        (8, 8, 3),
    ),
    "cnn_mnist": (models.CNNMnist, {"widths": (4, 8), "hidden": 8, "dropout": 0.5}, (8, 8, 1)),
    "densenet": (
        models.DenseNet,
        {
            "growth_rate": 4,
            "block_config": (1, 1),
            "num_init_features": 8,
            "bn_size": 2,
            "drop_rate": 0.5,
            "num_classes": 3,
        },
        (16, 16, 3),
    ),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_model_matches_linen(case):
    cls, kwargs, shape = MODEL_CASES[case]
    module = cls(**kwargs)
    x = jax.random.normal(jax.random.key(1), (2, *shape))
    rngs = {"dropout": jax.random.key(2)}
    bridged = cnnx.bridge(module, jax.ShapeDtypeStruct(x.shape, x.dtype), rngs=nnx.Rngs(0))
    variables = _perturb(bridged.linen_variables())
    bridged.load_linen_variables(variables)
    mutable = [c for c in variables if c != "params"] or False

    @jax.jit
    def linen(variables, x):
        evaluated = module.apply(variables, x, train=False)
        trained = module.apply(variables, x, train=True, rngs=rngs, mutable=mutable)
        return evaluated, trained if mutable else (trained, {})

    @nnx.jit
    def bridged_forward(model, x):
        evaluated = model(x, train=False)
        return evaluated, model(x, train=True, rngs=rngs)

    # evaluation: (logits, features) as linen's; training, with the same dropout key:
    # the outputs and the updated statistics as linen's.
    (expected_eval, (expected_train, updates)) = linen(variables, x)
    got_eval, got_train = bridged_forward(bridged, x)
    assert isinstance(got_eval, tuple) and set(got_eval[1]) == set(expected_eval[1])
    _close(got_eval, expected_eval)
    _close(got_train, expected_train)
    _close(bridged.linen_variables(), {**variables, **updates})

    # the NNX state mirrors linen's collections.
    params = nnx.to_pure_dict(nnx.state(bridged, nnx.Param))
    assert _shapes(params) == _shapes(variables["params"])
    if "batch_stats" in variables:
        stats = nnx.to_pure_dict(nnx.state(bridged, nnx.BatchStat))
        assert _shapes(stats) == _shapes(variables["batch_stats"])


def test_named_model_constructor():
    model = cnnx.ResNet20(num_classes=10, input_shape=(8, 8, 3), rngs=nnx.Rngs(0))
    assert isinstance(model, cnnx.Bridged) and isinstance(model, nnx.bridge.ToNNX)
    assert model.linen_module == models.ResNet20(num_classes=10)
    assert model.conv1["kernel"].shape == (3, 3, 3, 16)
    x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    assert _shapes(model.linen_variables()) == _shapes(
        jax.eval_shape(model.linen_module.init, KEY, x)
    )
    by_name = cnnx.get_model("lenet5", num_classes=3, rngs=0)
    assert by_name.linen_module == models.LeNet5(num_classes=3)
    assert by_name.linen_variables()["params"]["C1"]["kernel"].shape[2] == 1  # (32, 32, 1)


def test_model_trains_with_nnx_optimizer():
    shape = (8, 8, 1)
    rngs = nnx.Rngs(params=0, dropout=1)
    model = cnnx.CNNMnist(widths=(4, 8), hidden=32, dropout=0.1, input_shape=shape, rngs=rngs)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(1), (16, *shape))
    y = jnp.arange(16) % 10

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            logits, _ = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    losses = [float(step(model, optimizer, x, y)) for _ in range(10)]
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses
    moved = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
    assert not np.allclose(moved["bn0_0"]["mean"], stats["bn0_0"]["mean"])

    model.eval()
    assert model.deterministic
    eval_step = nnx.jit(lambda model, x: model(x)[0])
    first = eval_step(model, x)
    _close(eval_step(model, x), first)  # no dropout, statistics unchanged
    _close(nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)), moved)
    model.train()
    assert not model.deterministic
    a, b = model(x)[0], model(x)[0]  # fresh dropout keys per call
    assert not np.allclose(a, b)


def test_bridged_is_usable_inside_an_nnx_module():
    class Head(nnx.Module):
        def __init__(self, rngs):
            self.backbone = cnnx.Conv(4, 3, input_shape=(5, 5, 2), rngs=rngs)
            self.linear = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.linear(self.backbone(x).mean(axis=(1, 2)))

    model = Head(nnx.Rngs(0))
    grads = nnx.grad(lambda m: m(jnp.ones((1, 5, 5, 2))).sum())(model)
    assert grads.backbone.kernel.shape == (3, 3, 2, 4)
    view = nnx.view(model, deterministic=True)
    assert view.backbone.deterministic and not model.backbone.deterministic


def test_load_linen_variables_round_trip():
    module = layers.Conv(4, 3)
    model = cnnx.bridge(module, jnp.zeros((1, 5, 5, 2)), rngs=jax.random.key(3))
    variables = _perturb(model.linen_variables())
    model.load_linen_variables(variables)
    _close(model.linen_variables(), variables)
    frozen = cnnx.bridge(module, variables=flax.core.freeze(variables), rngs=0)
    assert isinstance(frozen.kernel, nnx.Param)
    frozen.load_linen_variables(flax.core.freeze(_perturb(variables)))
    _close(frozen.linen_variables(), _perturb(variables))
    bad = {"params": {**variables["params"], "kernel": jnp.zeros((1, 1, 2, 4))}}
    with pytest.raises(ValueError, match=r"variables.*kernel.*shape"):
        model.load_linen_variables(bad)
    with pytest.raises(ValueError, match=r"variables.*missing.*bias"):
        model.load_linen_variables({"params": {"kernel": variables["params"]["kernel"]}})


def test_errors_name_the_argument():
    x = jnp.zeros((1, 5, 5, 2))
    with pytest.raises(TypeError, match=r"`module`.*instantiate"):
        cnnx.bridge(layers.Conv, x, rngs=0)
    with pytest.raises(TypeError, match=r"`module`.*Linear"):
        cnnx.bridge(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), x, rngs=0)
    with pytest.raises(TypeError, match="`rngs`"):
        cnnx.bridge(layers.Conv(4, 3), x, rngs="seed")
    with pytest.raises(ValueError, match="sample"):
        cnnx.bridge(layers.Conv(4, 3), rngs=0)
    with pytest.raises(ValueError, match="not both"):
        cnnx.bridge(layers.Conv(4, 3), x, rngs=0, variables={"params": {}})
    with pytest.raises(TypeError, match="`variables`"):
        cnnx.bridge(layers.Conv(4, 3), rngs=0, variables=[1])
    with pytest.raises(TypeError, match="`input_shape`"):
        cnnx.Conv(4, 3, rngs=0)
    with pytest.raises(ValueError, match=r"`input_shape` \(=\(0, 3\)\)"):
        cnnx.Conv(4, 3, input_shape=(0, 3), rngs=0)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        cnnx.get_model("nope", rngs=0)
    conv = cnnx.Conv(4, 3, input_shape=(5, 5, 2), rngs=0)
    with pytest.raises(TypeError, match=r"`train`.*Conv"):
        conv(x, train=True)
    norm = cnnx.BatchNorm(input_shape=(5, 5, 2), rngs=0)
    with pytest.raises(TypeError, match="`train` given twice"):
        norm(x, True, train=True)


def test_train_flag_positionally_as_in_linen():
    norm = cnnx.BatchNorm(input_shape=(2, 2, 3), rngs=0)
    x = 1.0 + jax.random.normal(jax.random.key(1), (4, 2, 2, 3))
    evaluated = norm(x, False)
    _close(evaluated, norm(x, train=False))
    assert float(norm.mean[...].sum()) == 0.0  # evaluation leaves the statistics alone
    expected, updates = norm.linen_module.apply(
        norm.linen_variables(), x, train=True, mutable=["batch_stats"]
    )
    _close(norm(x, True), expected)
    _close(norm.linen_variables()["batch_stats"], updates["batch_stats"])
    assert float(norm.mean[...].sum()) != 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", cnnx.MODEL_NAMES)
def test_every_named_model_matches_linen(name):
    from cnn_jax.models.input_shapes import default_input

    # The smallest inputs each family takes (Inception's auxiliary head needs 299).
    # U-Net with the paper's valid padding: 188 is the smallest size it takes (-> 4x4).
    smallest = {"InceptionV3": (299, 299, 3), "Xception": (71, 71, 3), "UNet": (188, 188, 3)}
    factory = getattr(models, name)
    while isinstance(factory, functools.partial):
        factory = factory.func
    family = factory.__name__
    published, dtype = default_input(family)
    if len(published) != 3 or "Net5" in name or "Mnist" in name:
        shape = published  # audio, token ids, and nets with a flattening dense layer
    else:
        shape = smallest.get(name, (64, 64, 3))
    # WaveNet's classes condition generation and its call then needs a label: unconditional.
    classes = None if name == "WaveNet" else 3
    model = getattr(cnnx, name)(num_classes=classes, input_shape=shape, rngs=nnx.Rngs(0))
    if jnp.issubdtype(dtype, jnp.integer):
        x = jax.random.randint(jax.random.key(1), (1, *shape), 0, 2, dtype)
    else:
        x = jax.random.uniform(jax.random.key(1), (1, *shape), minval=-1, maxval=1)
    model.eval()
    forward = nnx.jit(lambda m, x: m(x)[0])
    linen = jax.jit(lambda v, x: model.linen_module.apply(v, x)[0])
    _close(forward(model, x), linen(model.linen_variables(), x))
