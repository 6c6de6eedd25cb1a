"""ResNet v2 (``keras.applications``'): sizes, layers, initialization, training, weights."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnn_jax import weights
from cnn_jax.models import resnet, resnet_v2
from tests import torch_oracle
from tests.model_helpers import (
    check_training,
    close,
    count,
    init_o0,
    jit_o0,
    normal,
    output_shapes,
    template,
)

# Parameters (the ``params`` collection) with 1000 classes: Keras' trainable weights (its
# ``count_params`` adds the batch-norm statistics, checked in test_keras_counts).
PARAMS = {
    "ResNet50V2": (resnet_v2.ResNet50V2, 25_568_360),
    "ResNet101V2": (resnet_v2.ResNet101V2, 44_577_896),
    "ResNet152V2": (resnet_v2.ResNet152V2, 60_236_904),
}
# keras.applications' count_params(): parameters plus batch-norm moving mean/variance.
KERAS_TOTALS = {"ResNet50V2": 25_613_800, "ResNet101V2": 44_675_560, "ResNet152V2": 60_380_648}
DEFAULT = {"ResNet50V2"}


def _slow_unless_default(names):
    return [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("name", _slow_unless_default(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make(), 64)["params"]) == expected  # any input size


@pytest.mark.parametrize("name", _slow_unless_default(KERAS_TOTALS))
def test_keras_counts(name):
    v = template(resnet_v2.KERAS_SPECS[name].model(), 64)
    assert count(v["params"]) + count(v["batch_stats"]) == KERAS_TOTALS[name]


def test_specs():
    assert set(resnet_v2.KERAS_SPECS) == set(KERAS_TOTALS)
    for spec in resnet_v2.KERAS_SPECS.values():
        assert spec.key_fn is None and spec.input_size == 224


def test_reexported_from_resnet():
    """``cnn_jax.models.resnet`` keeps every ResNet v2 name it had."""
    for name in resnet_v2.__all__:
        assert getattr(resnet, name) is getattr(resnet_v2, name), name
    assert resnet.KERAS_SPECS is resnet_v2.KERAS_SPECS


# --- shapes, features, initialization ------------------------------------------------


@pytest.mark.slow
def test_feature_shapes_at_224():
    _, f = output_shapes(resnet_v2.ResNet50V2(), 224, batch=1)
    assert f["stem"] == (1, 56, 56, 64) and f["conv5"] == (1, 7, 7, 2048)


def test_feature_shapes():
    logits, f = output_shapes(resnet_v2.ResNet50V2(num_classes=5), 64)
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


def test_initialization():
    """Keras: Glorot uniform, zero biases; biases where Keras has them."""
    p = init_o0(resnet_v2.ResNetV2(stage_sizes=(2,), num_classes=10), 32)["params"]
    k = p["conv2_block1"]["conv2_block1_2_conv"]["kernel"]  # (3, 3, 64, 64)
    limit = np.sqrt(6 / (9 * 64 + 9 * 64))
    assert 0.95 * limit < float(np.max(np.abs(k))) <= limit
    np.testing.assert_array_equal(p["conv1_conv"]["bias"], 0.0)
    assert "bias" not in p["conv2_block1"]["conv2_block1_1_conv"]
    assert "bias" in p["conv2_block1"]["conv2_block1_0_conv"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="stage_sizes"):
        resnet_v2.ResNetV2(stage_sizes=(3, 0))
    with pytest.raises(ValueError, match="width"):
        resnet_v2.ResNet50V2(width=2.5)
    with pytest.raises(ValueError, match=r"`x`.*\(32, 32, 3\)"):
        resnet_v2.ResNet50V2().init(jax.random.key(0), jnp.zeros((32, 32, 3)))
    block = resnet_v2.PreActBottleneck(4)
    with pytest.raises(ValueError, match="name"):
        block.init(jax.random.key(0), jnp.zeros((1, 8, 8, 16)))


# --- training --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "size"),
    [
        (resnet_v2.ResNet50V2, 32),
        (functools.partial(resnet_v2.ResNetV2, stage_sizes=(3, 2), width=16), 32),
    ],
    ids=["resnet50v2", "resnetv2_small"],
)
def test_forward_and_train_step_slow(make, size):
    check_training(make(num_classes=10), size)


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
    x = normal((2, size, size, 3), 3)
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
    tmpl = template(ours, size)
    forward = jit_o0(lambda v: ours.apply(v, x)[0])
    for path in paths:
        variables = weights.from_keras(weights.load_keras_weights(path), tmpl)
        close(forward(variables), expected)


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
    ours = resnet_v2.ResNetV2(stage_sizes=(2, 2), num_classes=10)
    assert count(template(ours, 32)) == net.count_params()
    _check_keras(net, ours, 32, tmp_path)


@pytest.mark.slow
def test_keras_resnet50v2(tmp_path):
    keras = torch_oracle.keras()
    with jax.threefry_partitionable(False):
        net = keras.applications.ResNet50V2(
            weights=None, input_shape=(64, 64, 3), classifier_activation=None
        )
    ours = resnet_v2.ResNet50V2()
    ours_names = {p[-2] for p in traverse_util.flatten_dict(template(ours, 64)["params"])}
    assert ours_names == {layer.name for layer in net.layers if layer.weights}
    _check_keras(net, ours, 64, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet101V2", "ResNet152V2"])
def test_keras_counts_and_names(name):
    keras = torch_oracle.keras()
    net = getattr(keras.applications, name)(weights=None)
    assert net.count_params() == KERAS_TOTALS[name]
    v = template(resnet_v2.KERAS_SPECS[name].model(), 64)
    names = {p[-2] for p in traverse_util.flatten_dict(v["params"])}
    assert names == {layer.name for layer in net.layers if layer.weights}
