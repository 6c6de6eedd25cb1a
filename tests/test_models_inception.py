"""GoogLeNet, Inception v3 and Xception: sizes, auxiliary heads, training, weights."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from cnn_jax import weights
from cnn_jax.models import googlenet, inception, xception
from tests import torch_oracle

GoogLeNet, InceptionV3, Xception = googlenet.GoogLeNet, inception.InceptionV3, xception.Xception

# Parameters with 1000 classes: torchvision's ``num_params`` (GoogLeNet without its
# auxiliary heads, Inception v3 with its head) and sums of parameters of the models it
# builds; Keras' ``count_params`` for Xception (which counts batch-norm statistics).
PARAMS = {
    "googlenet": (GoogLeNet, 13_004_888),
    "googlenet_noaux": (functools.partial(GoogLeNet, aux_logits=False), 6_624_904),
    "inception_v3": (InceptionV3, 27_161_264),
    "inception_v3_noaux": (functools.partial(InceptionV3, aux_logits=False), 23_834_568),
    "xception_trainable": (Xception, 22_855_952),
}


def _template(model, size, batch=1):
    x = jnp.zeros((batch, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def _count(tree) -> int:
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    size = 299 if "googlenet" not in name else 224
    assert _count(_template(make(), size)["params"]) == expected


def test_xception_count_equals_keras_count_params():
    variables = _template(Xception(), 299)
    assert _count(variables) == 22_910_480  # params and batch statistics
    assert _count(variables["batch_stats"]) == 54_528


def test_counts_do_not_depend_on_input_size():
    # The auxiliary heads are initialized whatever the input size.
    assert _count(_template(GoogLeNet(), 64)["params"]) == 13_004_888
    assert _count(_template(InceptionV3(), 75)["params"]) == 27_161_264
    assert _count(_template(Xception(), 71)["params"]) == 22_855_952


def _outputs(model, size, train, batch=2):
    """Shapes of ``(logits, features)`` by abstract evaluation: no compute, no memory."""
    x = jnp.zeros((batch, size, size, 3), jnp.float32)

    def run():
        variables = model.init(jax.random.key(0), x)
        if not train:
            return model.apply(variables, x)
        out, _ = model.apply(
            variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
        )
        return out

    logits, features = jax.eval_shape(run)
    return tuple(logits.shape), {k: tuple(v.shape) for k, v in features.items()}


def test_googlenet_shapes_and_aux_logits_only_in_training():
    stages = {
        "conv1": (2, 112, 112, 64),
        "conv3": (2, 56, 56, 192),
        "inception3a": (2, 28, 28, 256),
        "inception3b": (2, 28, 28, 480),
        "inception4a": (2, 14, 14, 512),
        "inception4b": (2, 14, 14, 512),
        "inception4c": (2, 14, 14, 512),
        "inception4d": (2, 14, 14, 528),
        "inception4e": (2, 14, 14, 832),
        "inception5a": (2, 7, 7, 832),
        "inception5b": (2, 7, 7, 1024),
        "pre_logits": (2, 1024),
    }
    assert _outputs(GoogLeNet(), 224, train=False) == ((2, 1000), stages)
    aux = {"aux_logits1": (2, 1000), "aux_logits2": (2, 1000)}
    assert _outputs(GoogLeNet(), 224, train=True) == ((2, 1000), {**stages, **aux})
    assert _outputs(GoogLeNet(aux_logits=False), 224, train=True) == ((2, 1000), stages)


def test_inception_v3_shapes_and_aux_logits_only_in_training():
    stages = {
        "Conv2d_1a_3x3": (2, 149, 149, 32),
        "Conv2d_2a_3x3": (2, 147, 147, 32),
        "Conv2d_2b_3x3": (2, 147, 147, 64),
        "Conv2d_3b_1x1": (2, 73, 73, 80),
        "Conv2d_4a_3x3": (2, 71, 71, 192),
        "Mixed_5b": (2, 35, 35, 256),
        "Mixed_5c": (2, 35, 35, 288),
        "Mixed_5d": (2, 35, 35, 288),
        "Mixed_6a": (2, 17, 17, 768),
        "Mixed_6b": (2, 17, 17, 768),
        "Mixed_6c": (2, 17, 17, 768),
        "Mixed_6d": (2, 17, 17, 768),
        "Mixed_6e": (2, 17, 17, 768),
        "Mixed_7a": (2, 8, 8, 1280),
        "Mixed_7b": (2, 8, 8, 2048),
        "Mixed_7c": (2, 8, 8, 2048),
        "pre_logits": (2, 2048),
    }
    assert _outputs(InceptionV3(), 299, train=False) == ((2, 1000), stages)
    aux = {"aux_logits": (2, 1000)}
    assert _outputs(InceptionV3(), 299, train=True) == ((2, 1000), {**stages, **aux})
    assert _outputs(InceptionV3(aux_logits=False), 299, train=True) == ((2, 1000), stages)
    logits, feats = _outputs(InceptionV3(aux_logits=False), 75, train=True)
    assert logits == (2, 1000) and feats["Mixed_7c"] == (2, 1, 1, 2048)


def test_inception_v3_aux_head_needs_299_in_training():
    with pytest.raises(ValueError, match=r"aux_logits=False.*|.*299x299"):
        _outputs(InceptionV3(), 298, train=True)
    _outputs(InceptionV3(), 298, train=False)  # evaluation does not run the head


def test_xception_shapes():
    sizes = {
        "block1": (147, 147, 64),
        "block2": (74, 74, 128),
        "block3": (37, 37, 256),
        "block4": (19, 19, 728),
        **{f"block{i}": (19, 19, 728) for i in range(5, 13)},
        "block13": (10, 10, 1024),
        "block14": (10, 10, 2048),
    }
    expected = {k: (2, *v) for k, v in sizes.items()} | {"pre_logits": (2, 2048)}
    assert _outputs(Xception(), 299, train=False) == ((2, 1000), expected)
    assert _outputs(Xception(num_classes=7), 71, train=True)[0] == (2, 7)


@pytest.mark.parametrize(
    "make, x, match",
    [
        (GoogLeNet, np.zeros((64, 64, 3), np.float32), "shape"),
        (InceptionV3, np.zeros((1, 75, 75), np.float32), "shape"),
        (Xception, np.zeros((71, 71, 3), np.float32), "shape"),
        (lambda: GoogLeNet(num_classes=0), np.zeros((1, 64, 64, 3), np.float32), "num_classes"),
        (lambda: InceptionV3(dropout=1.0), np.zeros((1, 75, 75, 3), np.float32), "dropout"),
        (lambda: Xception(num_classes=2.5), np.zeros((1, 71, 71, 3), np.float32), "num_classes"),
        (
            lambda: GoogLeNet(transform_input=True),
            np.zeros((1, 64, 64, 1), np.float32),
            "channels",
        ),
    ],
)
def test_bad_input_and_attributes(make, x, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda: make().init(jax.random.key(0), x))


def test_torch_trunc_normal_bounds_are_absolute():
    init = googlenet.torch_trunc_normal(1.0, -0.5, 0.5)
    w = np.asarray(init(jax.random.key(0), (20_000,)))
    assert w.min() >= -0.5 and w.max() <= 0.5 and w.min() < -0.49
    w = np.asarray(googlenet.torch_trunc_normal(0.1)(jax.random.key(1), (20_000,)))
    assert abs(w.std() - 0.1) < 0.003  # [-2, 2] is 20 standard deviations
    with pytest.raises(ValueError, match="stddev"):
        googlenet.torch_trunc_normal(0.0)


# --- training -------------------------------------------------------------------------

# XLA's CPU backend compiles these graphs 2-5x faster without LLVM's optimizations, which
# matters more here than the run time of one small batch.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)


def _random_variables(template, seed=0, dtype=None):
    """Random variables of the template's structure, as numpy arrays (no compilation).

    Kernels are He-scaled, batch norms random (statistics included); ``dtype`` overrides
    the template's.
    """
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = path[-1].key, tuple(leaf.shape)
        if name == "depthwise_kernel":
            x = rng.normal(0, np.sqrt(2 / np.prod(shape[:-2])), shape)
        elif name.endswith("kernel"):
            x = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
        elif name in ("scale", "var"):
            x = rng.uniform(0.5, 1.5, shape)
        else:  # bias, mean
            x = rng.normal(0, 0.1, shape)
        return x.astype(dtype or leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, template)


def _cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _train_step(model, aux_weight=0.3):
    """An SGD step with the auxiliary losses, returning everything to inspect."""
    tx = optax.sgd(0.01, momentum=0.9)

    def step(variables, x, y, key):
        opt_state = tx.init(variables["params"])

        def loss_fn(params):
            (logits, feats), updates = model.apply(
                {**variables, "params": params},
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": key},
            )
            aux = {k: v for k, v in feats.items() if k.startswith("aux_logits")}
            loss = _cross_entropy(logits, y)
            loss += aux_weight * sum(_cross_entropy(v, y) for v in aux.values())
            return loss, (updates, logits, aux)

        (loss, (updates, logits, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            variables["params"]
        )
        changes, opt_state = tx.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], changes)
        return {"params": params, **updates}, loss, grads, logits, aux

    return step


def _check_step(variables, new, loss, grads, aux, aux_keys, aux_modules):
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert sorted(aux) == sorted(aux_keys)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    for module in aux_modules:  # the auxiliary losses reach their heads
        assert np.abs(np.asarray(grads[module]["fc2"]["kernel"])).sum() > 0
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), variables, new)
    assert all(jax.tree.leaves(moved["params"]))
    assert all(jax.tree.leaves(moved["batch_stats"]))


TRACED = {
    "googlenet": (GoogLeNet, 64, ("aux_logits1", "aux_logits2")),
    "inception_v3": (InceptionV3, 299, ("aux_logits",)),
    "inception_v3_noaux": (functools.partial(InceptionV3, aux_logits=False), 75, ()),
    "xception": (Xception, 71, ()),
}


@pytest.mark.parametrize("name", ["inception_v3", "xception"])
def test_train_step_traces(name):
    """The whole training step (dropout, auxiliary losses, gradients) by abstract
    evaluation (GoogLeNet's is compiled in ``test_googlenet_train_step_equals_torchvision``,
    these in the slow ``test_train_step_small_input``)."""
    make, size, aux_keys = TRACED[name]
    model = make(num_classes=5)
    template = _template(model, size, batch=2)
    step = _train_step(model)
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    y = jax.ShapeDtypeStruct((2,), jnp.int32)
    new, loss, grads, logits, aux = jax.eval_shape(step, template, x, y, jax.random.key(0))
    assert jax.tree.structure(new) == jax.tree.structure(template)
    assert jax.tree.map(lambda g: g.shape, grads) == jax.tree.map(
        lambda p: p.shape, template["params"]
    )
    assert loss.shape == () and logits.shape == (2, 5)
    assert {k: v.shape for k, v in aux.items()} == {k: (2, 5) for k in aux_keys}


@pytest.mark.slow  # 1-4 min each on 2 CPU cores (compilation)
@pytest.mark.parametrize("name", ["inception_v3_noaux", "xception"])
def test_train_step_small_input(name):
    make, size, _ = TRACED[name]
    model = make(num_classes=5)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, size, size, 3)), jnp.float32)
    variables = _random_variables(_template(model, size))
    new, loss, grads, logits, aux = _jit(_train_step(model))(
        variables, x, np.array([1, 3]), jax.random.key(2)
    )
    assert logits.shape == (2, 5) and np.isfinite(np.asarray(logits)).all()
    _check_step(variables, new, loss, grads, aux, (), ())


def _check_googlenet_init(variables):
    """torchvision's init: truncated normal (std 0.01) weights, PyTorch's Linear biases,
    batch norm 1 / 0, running statistics 0 / 1."""
    flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, variables))
    for (collection, *path, leaf), v in flat.items():
        where = "/".join(path)
        if leaf == "kernel":
            assert abs(v.std() - 0.01) < (0.002 if v.size > 1000 else 0.01), where
            assert np.abs(v).max() <= 2.0
        elif (collection, *path, "kernel") in flat:  # a Linear's bias
            fan_in = flat[(collection, *path, "kernel")].shape[0]
            assert 0 < np.abs(v).max() <= 1 / np.sqrt(fan_in), where
        else:
            assert np.all(v == (1.0 if leaf in ("scale", "var") else 0.0)), where


@pytest.mark.slow  # ~ 1-2 min on 2 CPU cores (compiling the initializers)
def test_initialization():
    """GoogLeNet and Inception v3: torchvision's init (truncated normal, std 0.01; 0.1 and
    0.001 for Inception v3's ``AuxLogits.fc``). Xception: Keras' Glorot-uniform kernels,
    zero biases. Batch norms 1 / 0, running statistics 0 / 1."""
    x = jnp.zeros((1, 64, 64, 3))
    _check_googlenet_init(_jit(GoogLeNet(num_classes=10).init)(jax.random.key(0), x))

    x = jnp.zeros((1, 75, 75, 3))
    flat = traverse_util.flatten_dict(_jit(InceptionV3().init)(jax.random.key(0), x))
    for (collection, *path, leaf), v in flat.items():
        v, where = np.asarray(v), "/".join(path)
        if leaf == "kernel":
            std = 0.001 if where == "AuxLogits/fc" else 0.1
            assert abs(v.std() - std) < (0.05 if v.size > 5000 else 0.15) * std, where
        elif (collection, *path, "kernel") in flat:
            assert 0 < np.abs(v).max() <= 1 / np.sqrt(flat[(collection, *path, "kernel")].shape[0])
        else:
            assert np.all(v == (1.0 if leaf in ("scale", "var") else 0.0)), where

    x = jnp.zeros((1, 71, 71, 3))
    flat = traverse_util.flatten_dict(_jit(Xception().init)(jax.random.key(0), x))
    for (_, *path, leaf), v in flat.items():
        v, where = np.asarray(v), "/".join(path)
        if leaf.endswith("kernel"):
            receptive = np.prod(v.shape[:-2])
            limit = np.sqrt(6 / (receptive * (v.shape[-2] + v.shape[-1])))
            assert np.abs(v).max() <= limit * (1 + 1e-6), where
            assert abs(v.std() - limit / np.sqrt(3)) < 0.1 * limit, where
        else:
            assert np.all(v == (1.0 if leaf in ("scale", "var") else 0.0)), where


@pytest.mark.slow  # 45-57 s on 2 cores
def test_googlenet_train_step_equals_torchvision():
    """One compiled training step with both auxiliary heads; torchvision, given our
    variables through ``to_torch``, agrees on the loss, the logits, the auxiliary logits,
    every gradient and the new running statistics.

    In float64 on both sides, where the two must agree to rounding (1e-8); float32
    rounding moves each framework's gradients by up to ~1e-3 of their scale, so float32
    is checked separately, against our float64 gradients.
    """
    with jax.enable_x64(True):
        model = GoogLeNet(num_classes=10, dropout=0.0, dropout_aux=0.0)
        x = np.random.default_rng(0).normal(size=(2, 64, 64, 3))
        y = np.array([1, 3])
        variables = _random_variables(_template(model, 64), dtype=np.float64)
        new, loss, grads, logits, aux = _jit(_train_step(model))(variables, x, y, jax.random.key(2))
        _check_step(
            variables, new, loss, grads, aux, ("aux_logits1", "aux_logits2"), ("aux1", "aux2")
        )
    assert logits.dtype == jnp.float64 and grads["fc"]["kernel"].dtype == jnp.float64

    # float32 against those exact derivatives: every gradient within 5e-3 of its tensor's
    # largest entry (measured: at most 1.4e-3, median 5e-4; torchvision's float32 on the
    # same step: 1.1e-3 / 3e-4). With jaxlib 0.10's YNNPACK convolutions (XLA_FLAGS
    # without cnn_jax.xla_defaults) this was 0.2 / 0.02: the default flag keeps it out.
    v32 = jax.tree.map(lambda a: np.asarray(a, np.float32), variables)
    _, _, g32, _, _ = _jit(_train_step(model))(v32, x.astype(np.float32), y, jax.random.key(2))
    flat64 = traverse_util.flatten_dict(jax.tree.map(np.asarray, grads))
    for k, g in traverse_util.flatten_dict(jax.tree.map(np.asarray, g32)).items():
        assert g.dtype == np.float32
        exact = flat64[k]
        err = np.abs(g - exact).max() / max(np.abs(exact).max(), 1e-30)
        assert err < 5e-3, f"float32 gradient {'/'.join(k)}: relative error {err:.1e}"

    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    spec = googlenet.TORCHVISION_SPECS["googlenet"]
    state = weights.to_torch(variables, key_fn=spec.key_fn, transforms=spec.transforms)
    net = tv.models.googlenet(init_weights=False, num_classes=10, dropout=0.0, dropout_aux=0.0)
    net = net.double()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    net.train()
    out = net(_nchw(torch, x))
    ce = torch.nn.functional.cross_entropy
    target = torch.from_numpy(y)
    torch_loss = ce(out.logits, target) + 0.3 * (
        ce(out.aux_logits1, target) + ce(out.aux_logits2, target)
    )
    torch_loss.backward()
    np.testing.assert_allclose(float(loss), torch_loss.detach().item(), rtol=1e-10)
    _assert_logits_close(logits, out.logits.detach().numpy(), tol=1e-9)
    for k in ("aux_logits1", "aux_logits2"):
        _assert_logits_close(aux[k], getattr(out, k).detach().numpy(), tol=1e-9)
    ours = weights.to_torch({"params": grads}, key_fn=spec.key_fn, transforms=spec.transforms)
    theirs = {k: p.grad.numpy() for k, p in net.named_parameters()}
    assert sorted(ours) == sorted(theirs)
    for k, g in theirs.items():
        np.testing.assert_allclose(ours[k], g, rtol=0, atol=1e-8 * np.abs(g).max(), err_msg=k)
    stats = weights.to_torch({"batch_stats": new["batch_stats"]}, key_fn=spec.key_fn)
    after = net.state_dict()
    for k, v in stats.items():
        if "running" in k:  # stored in float32
            np.testing.assert_allclose(v, after[k].numpy(), rtol=1e-5, atol=1e-7, err_msg=k)


# --- torchvision ----------------------------------------------------------------------


def _torch_names(net):
    return {
        k: tuple(v.shape) for k, v in net.state_dict().items() if "num_batches_tracked" not in k
    }


def _our_names(spec, template):
    key_fn = spec.key_fn or weights.default_torch_key
    leaf = {"kernel": "weight", "bias": "bias", "scale": "weight"}
    leaf |= {"mean": "running_mean", "var": "running_var"}
    out = {}
    for (_, *path, name), v in traverse_util.flatten_dict(template).items():
        shape = tuple(v.shape)
        if name == "kernel":  # (H, W, I, O) -> (O, I, H, W); (I, O) -> (O, I)
            shape = shape[::-1] if len(shape) == 2 else (shape[3], shape[2], *shape[:2])
        out[f"{key_fn(tuple(path))}.{leaf[name]}"] = shape
    return out


@pytest.mark.parametrize(
    "spec_name, build",
    [
        ("googlenet", lambda tv: tv.models.googlenet(init_weights=False)),
        ("googlenet_noaux", lambda tv: tv.models.googlenet(aux_logits=False, init_weights=False)),
        ("inception_v3", lambda tv: tv.models.inception_v3(init_weights=False)),
    ],
)
def test_names_and_shapes_match_torchvision(spec_name, build):
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):  # no memory, no initialization
        net = build(tv)
    specs = {**googlenet.TORCHVISION_SPECS, **inception.TORCHVISION_SPECS}
    spec = specs[spec_name]
    assert spec.export
    model = spec.model(**spec.model_kwargs)
    assert model.transform_input  # as torchvision with its ImageNet weights
    template = _template(model, spec.input_size)
    assert _our_names(spec, template) == _torch_names(net)
    assert _count(template["params"]) == sum(p.numel() for p in net.parameters())


def _randomize_batch_norms(torch, net, x):
    """Running statistics of a forward pass (momentum 1) and random affine parameters."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
    net.train()
    with torch.no_grad():
        net(x)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    net.eval()


def _nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _assert_logits_close(ours, theirs, tol=1e-4):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    scale = np.abs(theirs).max()
    assert scale > 0 and np.abs(theirs[0] - theirs[1]).max() > 1e-2 * scale  # input-dependent
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol * scale)


def _torch_pair(spec, net, x):
    """``net``'s state dict through ``from_torch`` into our model (``transform_input`` off)."""
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    model = spec.model(num_classes=net.fc.out_features)
    template = _template(model, x.shape[1])
    variables = weights.from_torch(state, template, key_fn=spec.key_fn, transforms=spec.transforms)
    return model, jax.tree.map(jnp.asarray, variables)


def test_googlenet_logits_equal_torchvision():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    net = tv.models.googlenet(init_weights=True, dropout=0.0, dropout_aux=0.0, num_classes=10)
    _randomize_batch_norms(torch, net, _nchw(torch, x))
    spec = googlenet.TORCHVISION_SPECS["googlenet"]
    model, variables = _torch_pair(spec, net, x)
    with torch.no_grad():
        theirs = net(_nchw(torch, x)).numpy()
    ours, _ = _jit(model.apply)(variables, x)
    _assert_logits_close(ours, theirs)


def test_transform_input_equals_torchvision():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    with torch.device("meta"):
        net = tv.models.googlenet(transform_input=True, init_weights=False)
    theirs = net._transform_input(_nchw(torch, x)).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(googlenet.transform_input(x)), theirs, atol=1e-6)


def test_inception_v3_logits_equal_torchvision():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 75, 75, 3)).astype(np.float32)
    net = tv.models.inception_v3(init_weights=True, aux_logits=True, num_classes=10)
    _randomize_batch_norms_no_aux(torch, net, _nchw(torch, x))
    spec = inception.TORCHVISION_SPECS["inception_v3"]
    model, variables = _torch_pair(spec, net, x)
    with torch.no_grad():
        theirs = net(_nchw(torch, x)).numpy()
    ours, _ = _jit(model.apply)(variables, x)
    _assert_logits_close(ours, theirs)
    state = weights.to_torch(variables, key_fn=spec.key_fn)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})


def _randomize_batch_norms_no_aux(torch, net, x):
    """As ``_randomize_batch_norms`` for a net whose auxiliary head cannot run on ``x``."""
    aux, net.aux_logits, net.AuxLogits = net.AuxLogits, False, None
    _randomize_batch_norms(torch, net, x)
    net.AuxLogits, net.aux_logits = aux, True


# --- Keras ----------------------------------------------------------------------------


def _keras_xception(keras, x):
    """Keras' Xception (logits out) with the running statistics of a forward pass on ``x``
    (momentum 0) and random batch-norm scales and offsets."""
    net = keras.applications.Xception(
        weights=None, input_shape=x.shape[1:], classifier_activation=None
    )
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    net(x, training=True)
    rng = np.random.default_rng(0)
    for layer in norms:
        gamma, beta, mean, var = layer.get_weights()
        gamma = rng.uniform(0.5, 1.5, gamma.shape)
        layer.set_weights([gamma, rng.normal(0, 0.2, beta.shape), mean, var])
    return net


@pytest.mark.slow  # ~ 30 s on 2 CPU cores (Keras' eager forward passes and our compilation)
def test_xception_logits_equal_keras(tmp_path):
    keras = torch_oracle.keras()
    x = np.random.default_rng(0).normal(size=(2, 71, 71, 3)).astype(np.float32)
    net = _keras_xception(keras, x)
    theirs = np.asarray(net(x, training=False))

    # The layers with weights, in Keras' order, are those of `keras_layers`; the named
    # ones by name (the 8 unnamed shortcut layers are named by Keras' session counters).
    layers = [layer for layer in net.layers if layer.weights]
    ours = xception.keras_layers()
    classes = {"conv2d": "Conv2D", "separable_conv2d": "SeparableConv2D", "dense": "Dense"}
    classes["batch_normalization"] = "BatchNormalization"
    assert [type(layer).__name__ for layer in layers] == [classes[k] for _, k in ours]
    named = [(a.name, b) for a, (b, _) in zip(layers, ours) if b.startswith(("block", "pred"))]
    assert all(a == b for a, b in named) and len(named) == len(ours) - 8
    template = _template(Xception(), 71)
    modules = {path[0] for path in traverse_util.flatten_dict(template["params"])}
    assert modules == {name for name, _ in ours}

    path = tmp_path / "x.weights.h5"
    net.save_weights(str(path))
    loaded = xception.keras_layer_names(weights.load_keras_weights(path))
    model = Xception()
    variables = weights.from_keras(loaded, template)
    ours, _ = _jit(model.apply)(jax.tree.map(jnp.asarray, variables), x)
    _assert_logits_close(ours, theirs)


def test_keras_layer_names_renames_keras3_keys():
    layers = xception.keras_layers()
    counts: dict[str, int] = {}
    keras3 = {}
    for _, kind in layers:
        k = counts.get(kind, 0)
        counts[kind] = k + 1
        keras3[kind if k == 0 else f"{kind}_{k}"] = [np.full((1,), len(keras3))]
    renamed = xception.keras_layer_names(keras3)
    assert [int(v[0][0]) for v in (renamed[name] for name, _ in layers)] == list(range(81))
    assert renamed is not keras3 and xception.keras_layer_names(renamed) == renamed
    with pytest.raises(ValueError, match="conv2d_99"):
        xception.keras_layer_names({**keras3, "conv2d_99": []})

    # Shortcut layers numbered by an earlier session's counters (or Keras 2's from 1).
    shifted = {k: v for k, v in renamed.items() if not k.startswith(("conv2d", "batch_n"))}
    for i, suffix in enumerate(["", "_1", "_2", "_3"]):
        shifted[f"conv2d_{i + 5}"] = renamed[f"conv2d{suffix}"]
        shifted[f"batch_normalization_{i + 9}"] = renamed[f"batch_normalization{suffix}"]
    assert xception.keras_layer_names(shifted) == renamed
    del shifted["conv2d_6"]
    with pytest.raises(ValueError, match="3 unnamed conv2d"):
        xception.keras_layer_names(shifted)
