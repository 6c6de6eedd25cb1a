"""Xception (``keras.applications``'): sizes, training, Keras weights and layer names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnn_jax import weights
from cnn_jax.models import xception
from tests import torch_oracle
from tests.model_helpers import (
    assert_logits_close,
    aux_step_shapes,
    aux_train_step,
    check_aux_step,
    count,
    jit_fast,
    outputs,
    random_like,
    template,
)

Xception = xception.Xception

# Parameters with 1000 classes: Keras' ``count_params`` less the batch-norm statistics.
PARAMS = {"xception_trainable": (Xception, 22_855_952)}


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make(), 299)["params"]) == expected


def test_xception_count_equals_keras_count_params():
    variables = template(Xception(), 299)
    assert count(variables) == 22_910_480  # params and batch statistics
    assert count(variables["batch_stats"]) == 54_528


def test_counts_do_not_depend_on_input_size():
    assert count(template(Xception(), 71)["params"]) == 22_855_952


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
    assert outputs(Xception(), 299, train=False) == ((2, 1000), expected)
    assert outputs(Xception(num_classes=7), 71, train=True)[0] == (2, 7)


@pytest.mark.parametrize(
    "make, x, match",
    [
        (Xception, np.zeros((71, 71, 3), np.float32), "shape"),
        (lambda: Xception(num_classes=2.5), np.zeros((1, 71, 71, 3), np.float32), "num_classes"),
    ],
)
def test_bad_input_and_attributes(make, x, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda: make().init(jax.random.key(0), x))


# --- training -------------------------------------------------------------------------


@pytest.mark.parametrize("name, make, size, aux_keys", [("xception", Xception, 71, ())])
def test_train_step_traces(name, make, size, aux_keys):
    """The whole training step (gradients, batch statistics) by abstract evaluation
    (compiled in the slow ``test_train_step_small_input``)."""
    tmpl, (new, loss, grads, logits, aux) = aux_step_shapes(make(num_classes=5), size)
    assert jax.tree.structure(new) == jax.tree.structure(tmpl)
    assert jax.tree.map(lambda g: g.shape, grads) == jax.tree.map(lambda p: p.shape, tmpl["params"])
    assert loss.shape == () and logits.shape == (2, 5)
    assert {k: v.shape for k, v in aux.items()} == {k: (2, 5) for k in aux_keys}


@pytest.mark.slow  # 1-4 min on 2 CPU cores (compilation)
@pytest.mark.parametrize("name", ["xception"])
def test_train_step_small_input(name):
    model = Xception(num_classes=5)
    size = 71
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, size, size, 3)), jnp.float32)
    variables = random_like(template(model, size))
    new, loss, grads, logits, aux = jit_fast(aux_train_step(model))(
        variables, x, np.array([1, 3]), jax.random.key(2)
    )
    assert logits.shape == (2, 5) and np.isfinite(np.asarray(logits)).all()
    check_aux_step(variables, new, loss, grads, aux, (), ())


@pytest.mark.slow  # ~ 1 min on 2 CPU cores (compiling the initializers)
def test_initialization():
    """Keras' Glorot-uniform kernels, zero biases; batch norms 1 / 0, running statistics
    0 / 1."""
    x = jnp.zeros((1, 71, 71, 3))
    flat = traverse_util.flatten_dict(jit_fast(Xception().init)(jax.random.key(0), x))
    for (_, *path, leaf), v in flat.items():
        v, where = np.asarray(v), "/".join(path)
        if leaf.endswith("kernel"):
            receptive = np.prod(v.shape[:-2])
            limit = np.sqrt(6 / (receptive * (v.shape[-2] + v.shape[-1])))
            assert np.abs(v).max() <= limit * (1 + 1e-6), where
            assert abs(v.std() - limit / np.sqrt(3)) < 0.1 * limit, where
        else:
            assert np.all(v == (1.0 if leaf in ("scale", "var") else 0.0)), where


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
    tmpl = template(Xception(), 71)
    modules = {path[0] for path in traverse_util.flatten_dict(tmpl["params"])}
    assert modules == {name for name, _ in ours}

    path = tmp_path / "x.weights.h5"
    net.save_weights(str(path))
    loaded = xception.keras_layer_names(weights.load_keras_weights(path))
    model = Xception()
    variables = weights.from_keras(loaded, tmpl)
    ours, _ = jit_fast(model.apply)(jax.tree.map(jnp.asarray, variables), x)
    assert_logits_close(ours, theirs)


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
