"""AlexNet (torchvision's and the paper's) and ZFNet: sizes, layers, training, weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import weights
from cnn_jax.layers import BatchNorm, local_response_norm
from cnn_jax.models import alexnet, vgg
from cnn_jax.ops import max_pool
from tests import torch_oracle
from tests.model_helpers import (
    abstract_train_apply,
    check_forward_and_train_step,
    check_train_step_slow,
    count,
    feature_shapes,
    init_kept,
    scaled_variables,
    template,
)
from tests.model_torch import (
    check_torchvision_roundtrip,
    torch_layout,
    torch_state_shapes,
)

# Parameters with 1000 classes. torchvision: its documented ``num_params``; the papers'
# networks: computed here (see the module docstring of ``alexnet``).
PARAMS = {
    "alexnet": (alexnet.AlexNet, 61_100_840),
    "alexnet_paper": (alexnet.AlexNetPaper, 60_965_224),
    "alexnet_paper_one_tower": (lambda: alexnet.AlexNetPaper(two_tower=False), 62_378_344),
    "zfnet": (alexnet.ZFNet, 62_357_608),
}


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make())["params"]) == expected


@pytest.mark.parametrize("name", ["alexnet"])
def test_names_and_shapes_match_torchvision(name):
    """Every torchvision tensor has our counterpart of the same size, by the default key."""
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):  # no memory, no initialization
        net = getattr(tv.models, name)()
    spec = alexnet.TORCHVISION_SPECS[name]
    assert spec.export and spec.input_size == 224
    assert torch_layout(template(spec.model()), spec.key_fn) == torch_state_shapes(net)
    assert count(template(spec.model())["params"]) == sum(p.numel() for p in net.parameters())


def test_paper_feature_map_sizes():
    """The sizes of Krizhevsky et al. (Figure 2) and Zeiler & Fergus (Figure 3) at 224."""
    head = {"pooled": (9216,), "fc6": (4096,), "fc7": (4096,), "pre_logits": (4096,)}
    head["logits"] = (1000,)
    assert feature_shapes(alexnet.AlexNetPaper(), 224) == {
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
    assert feature_shapes(alexnet.ZFNet(), 224) == {
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
    tv = feature_shapes(alexnet.AlexNet(), 224)
    assert tv["conv1"] == (55, 55, 64) and tv["pool5"] == (6, 6, 256) and "norm1" not in tv
    assert feature_shapes(alexnet.ZFNet(norm=None), 224).keys() == tv.keys()


def test_injected_norm_and_dtype():
    """A BatchNorm injected into AlexNet (after every conv) and into the paper's network
    (one per tower); bfloat16 computation."""
    x = jnp.zeros((2, 64, 64, 3))
    v, _, upd = abstract_train_apply(alexnet.AlexNet(norm=BatchNorm, num_classes=10), x)
    assert sorted(v["batch_stats"]) == [f"norm{i}" for i in range(1, 6)]
    assert upd["batch_stats"]["norm2"]["mean"].shape == (192,)
    v, _, _ = abstract_train_apply(alexnet.AlexNetPaper(norm=BatchNorm, num_classes=10), x)
    assert sorted(v["batch_stats"]) == ["norm1_0", "norm1_1", "norm2_0", "norm2_1"]
    assert v["params"]["norm1_1"]["scale"].shape == (48,)  # each GPU's half of conv1
    assert v["params"]["norm2_1"]["scale"].shape == (128,)
    v, _, _ = abstract_train_apply(
        alexnet.AlexNetPaper(norm=BatchNorm, num_classes=10, two_tower=False), x
    )
    assert sorted(v["batch_stats"]) == ["norm1", "norm2"]
    assert "batch_stats" not in abstract_train_apply(alexnet.ZFNet(norm=None), x)[0]

    for model, size in [
        (alexnet.AlexNet(dtype=jnp.bfloat16), 64),
        (alexnet.AlexNetPaper(dtype=jnp.bfloat16), 64),
    ]:
        v, logits, _ = abstract_train_apply(model, jnp.zeros((2, size, size, 3)))
        assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 1000)
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v))


def test_two_towers_and_normalization_placement():
    """Grouped conv2/4/5 and per-tower LRN after conv1 and conv2 (paper, Section 3.2-3.3:
    each GPU holds half of every layer's maps); ZFNet normalizes after pooling (Figure 3)."""
    shapes = jax.tree.map(lambda v: v.shape, template(alexnet.AlexNetPaper(), 64)["params"])
    assert shapes["conv2"]["kernel"] == (5, 5, 48, 256)
    assert shapes["conv3"]["kernel"] == (3, 3, 256, 384)
    assert shapes["conv4"]["kernel"] == (3, 3, 192, 384)
    assert shapes["conv5"]["kernel"] == (3, 3, 192, 256)
    one = jax.tree.map(lambda v: v.shape, template(alexnet.AlexNetPaper(two_tower=False), 64))
    assert one["params"]["conv4"]["kernel"] == (3, 3, 384, 384)

    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3)) * 50
    model = alexnet.AlexNetPaper(num_classes=10)
    _, f = jax.jit(model.apply)(scaled_variables(model, 64), x)
    lrn = local_response_norm
    for name, half in (("1", 48), ("2", 128)):  # conv1's 96 maps too are 48 per GPU
        h = f[f"conv{name}"]
        towers = jnp.concatenate([lrn(h[..., :half]), lrn(h[..., half:])], axis=-1)
        np.testing.assert_allclose(f[f"norm{name}"], towers, rtol=1e-6)
        assert not np.allclose(f[f"norm{name}"], lrn(h), rtol=1e-6)  # the towers matter
    one = alexnet.AlexNetPaper(num_classes=10, two_tower=False)
    _, f1 = jax.jit(one.apply)(scaled_variables(one, 64), x)
    for name in ("1", "2"):
        np.testing.assert_allclose(f1[f"norm{name}"], lrn(f1[f"conv{name}"]), rtol=1e-6)
    np.testing.assert_array_equal(f["pool2"], max_pool(f["norm2"], 3, 2))

    zf = alexnet.ZFNet(num_classes=10)
    _, g = jax.jit(zf.apply)(scaled_variables(zf, 64), x)
    np.testing.assert_array_equal(g["pool1"], max_pool(g["conv1"], 3, 2, ceil_mode=True))
    np.testing.assert_allclose(g["norm1"], lrn(g["pool1"]), rtol=1e-6)


def test_paper_initialization():
    """N(0, 0.01) weights; biases 1 in conv2/4/5 and fc6/7 (Krizhevsky et al., Section 5),
    all 0 in ZFNet (Zeiler & Fergus, Section 3)."""
    convs = [f"conv{i}" for i in range(1, 6)]

    def keep(v):  # biases and the small kernels only
        p = v["params"]
        return {n: p[n] if n in (*convs, "fc8") else {"bias": p[n]["bias"]} for n in p}

    p = init_kept(alexnet.AlexNetPaper(num_classes=10), 64, keep=keep)
    for name in (*convs, "fc8"):
        assert abs(float(jnp.std(p[name]["kernel"])) - 0.01) < 1e-3, name
    for name in (*convs, "fc6", "fc7", "fc8"):
        expected = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        np.testing.assert_array_equal(p[name]["bias"], expected, err_msg=name)
    z = init_kept(alexnet.ZFNet(num_classes=10), 64, keep=keep)
    assert sorted(z) == [*convs, "fc6", "fc7", "fc8"]
    assert all(not np.any(z[n]["bias"]) for n in z)
    assert abs(float(jnp.std(z["conv2"]["kernel"])) - 0.01) < 1e-3


@pytest.mark.parametrize(("make", "size", "lr"), [(alexnet.AlexNet, 64, 0.01)], ids=["alexnet"])
def test_forward_and_train_step(make, size, lr):
    # torchvision's scales (``test_torchvision_initialization`` checks the real init).
    def stds(path, shape):
        if len(shape) == 2:
            return np.sqrt(1 / (3 * shape[0]))
        return np.sqrt(1 / (3 * np.prod(shape[:-1])))

    check_forward_and_train_step(make(num_classes=10), size, lr, stds, pooled=256 * 36)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "lr"),
    [(alexnet.AlexNetPaper, 3e-4), (alexnet.ZFNet, 1e-3)],
    ids=["paper", "zfnet"],
)
def test_train_step_slow(make, lr):
    check_train_step_slow(make, lr)


def test_torchvision_initialization():
    """torchvision's init: AlexNet PyTorch defaults."""

    def keep_alexnet(v):
        p = v["params"]
        return {"k": p["features_3"]["kernel"], "b": p["classifier_4"]["bias"]}

    a = init_kept(alexnet.AlexNet(num_classes=10), 64, keep=keep_alexnet)
    bound = 1 / np.sqrt(5 * 5 * 64)  # (5, 5, 64, 192): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert 0.95 * bound < float(jnp.max(jnp.abs(a["k"]))) <= bound
    assert 0.95 / 64 < float(jnp.max(jnp.abs(a["b"]))) <= 1 / 64


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        alexnet.AlexNet(num_classes=0)
    with pytest.raises(ValueError, match="dropout"):
        alexnet.ZFNet(dropout=1.0)
    with pytest.raises(ValueError, match=r"`x`.*\(2, 62, 62, 3\)"):
        template(alexnet.AlexNetPaper(), size=62, batch=2)
    with pytest.raises(ValueError, match=r"`x`.*\(64, 64, 3\)"):
        alexnet.AlexNet().init(jax.random.key(0), jnp.zeros((64, 64, 3)))
    assert count(template(alexnet.ZFNet(), size=63)["params"]) == PARAMS["zfnet"][1]


# --- torchvision weights -------------------------------------------------------------


@pytest.mark.parametrize(("name", "size"), [("alexnet", 64)])
def test_torchvision_weights(name, size):
    check_torchvision_roundtrip(alexnet.TORCHVISION_SPECS[name], name, size)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("alexnet", 224)])
def test_torchvision_weights_slow(name, size):
    check_torchvision_roundtrip(alexnet.TORCHVISION_SPECS[name], name, size)


def test_mismatched_state_dict_lists_the_keys():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    spec = alexnet.TORCHVISION_SPECS["alexnet"]
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in tv.models.alexnet().state_dict().items()}
    sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    tmpl = template(spec.model(), 64)
    kw = dict(key_fn=spec.key_fn, transforms=spec.transforms)
    weights.from_torch(sd, tmpl, **kw)  # fits

    missing = dict(sd)
    del missing["features.3.bias"]
    with pytest.raises(weights.WeightMismatchError, match=r"missing[\s\S]*features\.3\.bias"):
        weights.from_torch(missing, tmpl, **kw)

    wrong = {**sd, "classifier.6.weight": np.zeros((10, 4096), np.float32)}
    with pytest.raises(weights.WeightMismatchError, match=r"classifier\.6\.weight: \(10, 4096\)"):
        weights.from_torch(wrong, tmpl, **kw)

    extra = {**sd, "features.1.weight": np.zeros(3, np.float32)}
    with pytest.raises(weights.WeightMismatchError, match=r"not used[\s\S]*features\.1\.weight"):
        weights.from_torch(extra, tmpl, **kw)
    vgg_template = template(vgg.VGG11BN(), 32)
    with pytest.raises(weights.WeightMismatchError, match=r"features\.1\.running_mean"):
        weights.from_torch(sd, vgg_template)
