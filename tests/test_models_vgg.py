"""VGG (torchvision's): sizes, layers, training, weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import vgg
from tests import torch_oracle
from tests.model_helpers import (
    abstract_train_apply,
    check_forward_and_train_step,
    check_train_step_slow,
    count,
    feature_shapes,
    init_kept,
    template,
)
from tests.model_torch import (
    check_torchvision_roundtrip,
    torch_layout,
    torch_state_shapes,
)

# Parameters with 1000 classes: torchvision's documented ``num_params``.
PARAMS = {
    "vgg11": (vgg.VGG11, 132_863_336),
    "vgg11_bn": (vgg.VGG11BN, 132_868_840),
    "vgg13": (vgg.VGG13, 133_047_848),
    "vgg13_bn": (vgg.VGG13BN, 133_053_736),
    "vgg16": (vgg.VGG16, 138_357_544),
    "vgg16_bn": (vgg.VGG16BN, 138_365_992),
    "vgg19": (vgg.VGG19, 143_667_240),
    "vgg19_bn": (vgg.VGG19BN, 143_678_248),
}
TORCHVISION = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make())["params"]) == expected


@pytest.mark.parametrize("name", TORCHVISION)
def test_names_and_shapes_match_torchvision(name):
    """Every torchvision tensor has our counterpart of the same size, by the default key."""
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):  # no memory, no initialization
        net = getattr(tv.models, name)()
    spec = vgg.TORCHVISION_SPECS[name]
    assert spec.export and spec.input_size == 224
    assert torch_layout(template(spec.model()), spec.key_fn) == torch_state_shapes(net)
    assert count(template(spec.model())["params"]) == sum(p.numel() for p in net.parameters())


def test_vgg_feature_shapes():
    f = feature_shapes(vgg.VGG16(num_classes=10), 224)
    widths = (64, 128, 256, 512, 512)
    assert f == {
        **{f"block{b + 1}": (224 >> (b + 1), 224 >> (b + 1), w) for b, w in enumerate(widths)},
        "pooled": (25088,),
        "fc6": (4096,),
        "fc7": (4096,),
        "pre_logits": (4096,),
        "logits": (10,),
    }
    small = feature_shapes(vgg.VGG11BN(num_classes=10), 32)  # 1x1 after the last pool, 7x7
    assert small["block5"] == (1, 1, 512) and small["pooled"] == (25088,)


def test_dtype():
    """bfloat16 computation, float32 parameters."""
    v, logits, _ = abstract_train_apply(vgg.VGG11BN(dtype=jnp.bfloat16), jnp.zeros((2, 32, 32, 3)))
    assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 1000)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v))


@pytest.mark.slow  # 19 s on 2 cores
@pytest.mark.parametrize(("make", "size", "lr"), [(vgg.VGG11, 32, 0.01)], ids=["vgg11"])
def test_forward_and_train_step(make, size, lr):
    # torchvision's scales (``test_torchvision_initialization`` checks the real init).
    def stds(path, shape):
        if len(shape) == 2:
            return 0.01
        return np.sqrt(2 / (np.prod(shape[:2]) * shape[3]))

    check_forward_and_train_step(make(num_classes=10), size, lr, stds, pooled=512 * 49)


@pytest.mark.slow
@pytest.mark.parametrize(("make", "lr"), [(vgg.VGG11BN, 1e-2)], ids=["vgg11bn"])
def test_train_step_slow(make, lr):
    check_train_step_slow(make, lr)


def test_torchvision_initialization():
    """torchvision's init: VGG Kaiming fan_out, N(0, 0.01)."""

    def keep_vgg(v):
        p = v["params"]
        return {
            "conv": p["features_4"],
            "bn": p["features_5"],
            "var": v["batch_stats"]["features_5"]["var"],
            "fc": p["classifier_6"],
            "b0": p["classifier_0"]["bias"],
        }

    v = init_kept(vgg.VGG11BN(num_classes=10), 32, keep=keep_vgg)
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
        vgg.VGG11(num_classes=2.5)
    with pytest.raises(ValueError, match="cfg"):
        vgg.VGG(cfg=(64, "X"))
    with pytest.raises(ValueError, match=r"`x`.*\(1, 16, 16, 3\)"):
        template(vgg.VGG11(), size=16)


# --- torchvision weights -------------------------------------------------------------


@pytest.mark.slow  # 25 s on 2 cores
@pytest.mark.parametrize(("name", "size"), [("vgg11_bn", 32)])
def test_torchvision_weights(name, size):
    check_torchvision_roundtrip(vgg.TORCHVISION_SPECS[name], name, size)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size"),
    [("vgg11_bn", 224)]
    + [(n, 32) for n in ("vgg11", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")],
)
def test_torchvision_weights_slow(name, size):
    check_torchvision_roundtrip(vgg.TORCHVISION_SPECS[name], name, size)
