"""DenseNet-BC (torchvision's): sizes, layers, initialization, training, weights."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import densenet
from tests import torch_oracle
from tests.model_helpers import (
    check_training,
    count,
    he_variables,
    init_o0,
    jit_o0,
    normal,
    output_shapes,
    rbg_key,
    std_ratio,
    template,
)
from tests.model_torch import (
    check_torchvision_fresh,
    torch_layout,
    torch_state_shapes,
)

# Parameters (the ``params`` collection) with 1000 classes: torchvision's documented
# ``num_params``.
PARAMS = {
    "densenet121": (densenet.DenseNet121, 7_978_856),
    "densenet169": (densenet.DenseNet169, 14_149_480),
    "densenet201": (densenet.DenseNet201, 20_013_928),
    "densenet161": (densenet.DenseNet161, 28_681_000),
}
DEFAULT = {"densenet121"}


def _slow_unless_default(names):
    return [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in names]


SMALL_DENSENET = functools.partial(
    densenet.DenseNet, growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2
)


@pytest.mark.parametrize("name", _slow_unless_default(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make(), 64)["params"]) == expected  # any input size


@pytest.mark.parametrize("name", _slow_unless_default(densenet.TORCHVISION_SPECS))
def test_names_and_shapes_match_torchvision(name):
    """Every torchvision tensor has our counterpart of the same shape, by the spec's key."""
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):  # no memory, no initialization
        net = getattr(tv.models, name)()
    spec = densenet.TORCHVISION_SPECS[name]
    assert spec.export and spec.input_size == 224
    assert torch_layout(template(spec.model(), 64), spec.key_fn) == torch_state_shapes(net)
    assert PARAMS[name][1] == sum(p.numel() for p in net.parameters())


def test_specs():
    assert set(densenet.TORCHVISION_SPECS) == {f"densenet{d}" for d in (121, 161, 169, 201)}
    assert densenet.torch_key(("features_denseblock2", "denselayer10", "norm1")) == (
        "features.denseblock2.denselayer10.norm1"
    )


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


@pytest.mark.slow
def test_feature_shapes_at_224():
    _, f = output_shapes(densenet.DenseNet161(), 224, batch=1)
    assert f["stem"] == (1, 56, 56, 96) and f["denseblock4"] == (1, 7, 7, 2208)


def test_feature_shapes():
    logits, f = output_shapes(densenet.DenseNet121(num_classes=3), 64)
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
    model = SMALL_DENSENET(dtype=jnp.bfloat16)
    logits, _ = jax.eval_shape(
        lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )[0]
    assert logits.dtype == jnp.bfloat16


def test_initialization():
    """torchvision: Kaiming normal (fan_in), BN 1/0, Linear default with zero bias."""
    d = init_o0(densenet.DenseNet(growth_rate=32, block_config=(2, 2), num_classes=10), 32)
    p = d["params"]
    k = p["features_denseblock1"]["denselayer2"]["conv1"]["kernel"]  # (1, 1, 96, 128)
    assert abs(std_ratio(k, 96) - 1) < 0.03
    np.testing.assert_array_equal(p["classifier"]["bias"], 0.0)
    np.testing.assert_array_equal(d["batch_stats"]["features_norm5"]["var"], 1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="growth_rate"):
        densenet.DenseNet(growth_rate=0)
    with pytest.raises(ValueError, match="block_config"):
        densenet.DenseNet(block_config=[6, "12"])
    with pytest.raises(ValueError, match="drop_rate"):
        densenet.DenseNet121(drop_rate=1.0)
    with pytest.raises(ValueError, match=r"`x`.*\(32, 32, 3\)"):
        densenet.DenseNet121().init(jax.random.key(0), jnp.zeros((32, 32, 3)))


# --- training --------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "size"), [(SMALL_DENSENET, 32)], ids=["densenet_small"])
def test_forward_and_train_step(make, size):
    check_training(make(num_classes=10), size)


@pytest.mark.slow
@pytest.mark.parametrize(("make", "size"), [(densenet.DenseNet121, 32)], ids=["densenet121"])
def test_forward_and_train_step_slow(make, size):
    check_training(make(num_classes=10), size)


def test_densenet_dropout():
    model = SMALL_DENSENET(num_classes=10, drop_rate=0.5)
    x = normal((2, 16, 16, 3), 1)
    variables = he_variables(model, 16)

    @jit_o0
    def run(variables, key):
        def train(m):
            out = m.apply(variables, x, True, rngs={"dropout": key}, mutable=["batch_stats"])
            return out[0][0]

        return model.apply(variables, x)[0], train(model), train(SMALL_DENSENET(num_classes=10))

    evaluated, dropped, kept = run(variables, rbg_key(2))
    evaluated2, dropped2, _ = run(variables, rbg_key(3))
    assert not np.allclose(dropped, kept) and not np.allclose(dropped, dropped2)
    np.testing.assert_array_equal(evaluated, evaluated2)  # no dropout in evaluation


# --- torchvision weights ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["densenet121"])
def test_torchvision_weights(name):
    check_torchvision_fresh(densenet.TORCHVISION_SPECS[name], name, 64)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size"),
    [("densenet121", 224)] + [(n, 64) for n in ("densenet161", "densenet169", "densenet201")],
)
def test_torchvision_weights_slow(name, size):
    check_torchvision_fresh(densenet.TORCHVISION_SPECS[name], name, size)
