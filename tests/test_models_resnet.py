"""ResNet v1 (torchvision's) and the CIFAR ResNets: sizes, blocks, training, weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import weights
from cnn_jax.models import densenet, resnet
from tests import torch_oracle
from tests.model_helpers import (
    check_training,
    count,
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

# Parameters (the ``params`` collection) with 1000 classes (10 for the CIFAR nets).
# torchvision: its documented ``num_params``; CIFAR: the 0.27M / 0.46M / 0.66M / 0.85M /
# 1.7M of He et al. 2015, Table 6.
PARAMS = {
    "resnet18": (resnet.ResNet18, 11_689_512),
    "resnet34": (resnet.ResNet34, 21_797_672),
    "resnet50": (resnet.ResNet50, 25_557_032),
    "resnet101": (resnet.ResNet101, 44_549_160),
    "resnet152": (resnet.ResNet152, 60_192_808),
    "resnet20": (resnet.ResNet20, 269_722),
    "resnet32": (resnet.ResNet32, 464_154),
    "resnet44": (resnet.ResNet44, 658_586),
    "resnet56": (resnet.ResNet56, 853_018),
    "resnet110": (resnet.ResNet110, 1_727_962),
}
DEFAULT = {"resnet18", "resnet50", "resnet20", "resnet56"}


def _slow_unless_default(names):
    return [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("name", _slow_unless_default(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make(), 64)["params"]) == expected  # any input size


@pytest.mark.parametrize("name", _slow_unless_default(resnet.TORCHVISION_SPECS))
def test_names_and_shapes_match_torchvision(name):
    """Every torchvision tensor has our counterpart of the same shape, by the spec's key."""
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):  # no memory, no initialization
        net = getattr(tv.models, name)()
    spec = resnet.TORCHVISION_SPECS[name]
    assert spec.export and spec.input_size == 224
    assert torch_layout(template(spec.model(), 64), spec.key_fn) == torch_state_shapes(net)
    assert PARAMS[name][1] == sum(p.numel() for p in net.parameters())


def test_specs():
    assert set(resnet.TORCHVISION_SPECS) == {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    assert weights.default_torch_key(("layer3_0", "downsample_1")) == "layer3.0.downsample.1"


# --- shapes, features, initialization ------------------------------------------------


@pytest.mark.slow
def test_feature_shapes_at_224():
    _, f = output_shapes(resnet.ResNet50(), 224, batch=1)
    assert f["stem"] == (1, 56, 56, 64) and f["layer4"] == (1, 7, 7, 2048)
    assert f["pre_logits"] == (1, 2048)


def test_feature_shapes():
    logits, f = output_shapes(resnet.ResNet18(num_classes=7), 64)
    assert logits == (2, 7)
    assert f == {
        "stem": (2, 16, 16, 64),
        "layer1": (2, 16, 16, 64),
        "layer2": (2, 8, 8, 128),
        "layer3": (2, 4, 4, 256),
        "layer4": (2, 2, 2, 512),
        "pre_logits": (2, 512),
    }
    _, f = output_shapes(resnet.ResNet20(), 32)
    assert f == {
        "stem": (2, 32, 32, 16),
        "layer1": (2, 32, 32, 16),
        "layer2": (2, 16, 16, 32),
        "layer3": (2, 8, 8, 64),
        "pre_logits": (2, 64),
    }


def test_dtype():
    model = resnet.ResNet20(dtype=jnp.bfloat16)
    logits, _ = jax.eval_shape(
        lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )[0]
    assert logits.dtype == jnp.bfloat16


def test_initialization():
    """torchvision: Kaiming normal (fan_out), BN 1/0, Linear default."""
    p = init_o0(resnet.ResNet(stage_sizes=(1, 1), num_classes=10), 32)["params"]
    assert abs(std_ratio(p["layer1_0"]["conv1"]["kernel"], 9 * 64) - 1) < 0.03
    assert abs(std_ratio(p["layer2_0"]["downsample_0"]["kernel"], 128) - 1) < 0.03
    np.testing.assert_array_equal(p["layer1_0"]["bn2"]["scale"], 1.0)
    np.testing.assert_array_equal(p["bn1"]["bias"], 0.0)
    bound = 1 / np.sqrt(128)  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias too
    for leaf in ("kernel", "bias"):
        m = float(np.max(np.abs(p["fc"][leaf])))
        assert 0.7 * bound < m <= bound, leaf


def test_zero_init_residual():
    """The last norm of every block starts at scale 0: each block is then the identity
    (after the ReLU), or the shortcut alone where the shape changes."""
    model = resnet.ResNet(stage_sizes=(1, 1), width=8, num_classes=10, zero_init_residual=True)
    x = normal((2, 32, 32, 3), 1)
    variables = init_o0(model, 32)
    p = variables["params"]
    for block in ("layer1_0", "layer2_0"):
        np.testing.assert_array_equal(p[block]["bn2"]["scale"], 0.0)
        np.testing.assert_array_equal(p[block]["bn1"]["scale"], 1.0)
    _, f = jit_o0(model.apply)(variables, x)
    np.testing.assert_array_equal(f["layer1"], f["stem"])
    h = np.maximum(normal((2, 8, 8, 16), 2), 0)
    block = resnet.Bottleneck(4, zero_init_residual=True)
    v = jit_o0(block.init)(rbg_key(0), h)
    np.testing.assert_array_equal(v["params"]["bn3"]["scale"], 0.0)
    np.testing.assert_array_equal(v["params"]["bn2"]["scale"], 1.0)
    np.testing.assert_array_equal(jit_o0(block.apply)(v, h), h)


def test_cifar_option_a_shortcut():
    """Option A: the shortcut is the identity subsampled by 2 and zero-padded with the
    new channels, half on each side; it has no parameters."""
    block = resnet.BasicBlock(16, strides=2, shortcut="A", zero_init_residual=True)
    x = np.maximum(normal((2, 7, 7, 8), 0), 0)
    variables = jit_o0(block.init)(rbg_key(1), x)
    assert "downsample_0" not in variables["params"]
    expected = np.pad(x[:, ::2, ::2], ((0, 0), (0, 0), (0, 0), (4, 4)))
    np.testing.assert_array_equal(jit_o0(block.apply)(variables, x), expected)

    a = template(resnet.ResNet20(), 32)["params"]
    b = template(resnet.ResNet20(shortcut="B"), 32)["params"]
    assert all("downsample_0" not in a[k] for k in a if k.startswith("layer"))
    assert set(b["layer2_0"]) >= {"downsample_0", "downsample_1"}
    assert "downsample_0" not in b["layer2_1"]
    # the 1x1 projections and their norms: 16*32 + 2*32 + 32*64 + 2*64
    assert count(b) - count(a) == 16 * 32 + 64 + 32 * 64 + 128


def test_bad_arguments():
    with pytest.raises(ValueError, match="stage_sizes"):
        resnet.ResNet(stage_sizes=())
    with pytest.raises(ValueError, match="num_classes"):
        resnet.ResNet18(num_classes=0)
    with pytest.raises(ValueError, match="shortcut"):
        resnet.ResNet20(shortcut="C")
    with pytest.raises(ValueError, match="shortcut"):
        resnet.BasicBlock(8, shortcut="b")
    with pytest.raises(ValueError, match="widths"):
        resnet.ResNetCifar(stage_sizes=(3, 3, 3), widths=(16, 32))
    for model in (resnet.ResNet18(), resnet.ResNet20()):
        with pytest.raises(ValueError, match=r"`x`.*\(32, 32, 3\)"):
            model.init(jax.random.key(0), jnp.zeros((32, 32, 3)))


# --- training --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "size"),
    [(resnet.ResNet18, 32), (resnet.ResNet20, 32)],
    ids=["resnet18", "resnet20"],
)
def test_forward_and_train_step(make, size):
    check_training(make(num_classes=10), size)


@pytest.mark.slow
@pytest.mark.parametrize(("make", "size"), [(resnet.ResNet50, 32)], ids=["resnet50"])
def test_forward_and_train_step_slow(make, size):
    check_training(make(num_classes=10), size)


# --- torchvision weights ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18"])
def test_torchvision_weights(name):
    check_torchvision_fresh(resnet.TORCHVISION_SPECS[name], name, 64)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size"),
    [("resnet18", 224), ("resnet50", 224)]
    + [(n, 64) for n in ("resnet34", "resnet101", "resnet152")],
)
def test_torchvision_weights_slow(name, size):
    check_torchvision_fresh(resnet.TORCHVISION_SPECS[name], name, size)


def test_mismatched_state_dict_lists_the_keys():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in tv.models.resnet18().state_dict().items()}
    sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    tmpl = template(resnet.ResNet18(), 64)
    weights.from_torch(sd, tmpl)  # fits

    missing = dict(sd)
    del missing["layer2.0.downsample.1.running_var"]
    with pytest.raises(
        weights.WeightMismatchError, match=r"missing[\s\S]*layer2\.0\.downsample\.1\.running_var"
    ):
        weights.from_torch(missing, tmpl)
    wrong = {**sd, "fc.weight": np.zeros((10, 512), np.float32)}
    with pytest.raises(weights.WeightMismatchError, match=r"fc\.weight: \(10, 512\)"):
        weights.from_torch(wrong, tmpl)
    with pytest.raises(  # BasicBlock weights for a Bottleneck network
        weights.WeightMismatchError,
        match=r"missing[\s\S]*layer1\.0\.bn3\.running_mean[\s\S]*fc\.weight: \(1000, 512\)",
    ):
        weights.from_torch(sd, template(resnet.ResNet50(), 64))
    with pytest.raises(
        weights.WeightMismatchError,
        match=r"missing from the PyTorch weights \(606\)[\s\S]*not used[\s\S]*layer1",
    ):
        weights.from_torch(sd, template(densenet.DenseNet121(), 64), key_fn=densenet.torch_key)
