"""Weight files and the generic PyTorch/Keras converters (the families test their own)."""

from __future__ import annotations

import pickle

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import weights
from cnn_jax.layers import BatchNorm, Conv, DepthwiseSeparableConv
from tests import torch_oracle


class _Small(nn.Module):
    """Mirrors ``_torch_small``: names as PyTorch's, NHWC flatten."""

    @nn.compact
    def __call__(self, x, train=False):
        x = Conv(4, 3, padding=1, name="features_0")(x)
        x = nn.relu(BatchNorm(name="features_1")(x, train=train))
        x = nn.max_pool(x, (2, 2), (2, 2))
        return nn.Dense(5, name="classifier")(x.reshape(x.shape[0], -1)), {}


def _torch_small():
    torch = torch_oracle.torch()
    net = torch.nn.Module()
    net.features = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
    )
    net.classifier = torch.nn.Linear(4 * 4 * 4, 5)

    def forward(x):
        return net.classifier(torch.flatten(net.features(x), 1))

    net.forward = forward
    with torch.no_grad():  # non-trivial running statistics
        net.features[1].running_mean.uniform_(-1, 1)
        net.features[1].running_var.uniform_(0.5, 2)
        net.features[1].weight.uniform_(0.5, 2)
        net.features[1].bias.uniform_(-1, 1)
    return net.eval()


_TRANSFORMS = {"classifier.weight": weights.permute_flatten((4, 8 // 2, 8 // 2))}


def _template(model, x):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def _state(net):
    return {k: v.numpy() for k, v in net.state_dict().items()}


def test_from_torch_matches_pytorch_and_round_trips():
    torch = torch_oracle.torch()
    net = _torch_small()
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    model = _Small()
    variables = weights.from_torch(_state(net), _template(model, x), transforms=_TRANSFORMS)
    ours, _ = model.apply(variables, x)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    back = weights.to_torch(variables, transforms=_TRANSFORMS)
    assert set(back) == set(net.state_dict())
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(back[k], v.numpy(), err_msg=k)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_from_torch_errors_list_the_keys():
    net = _torch_small()
    model = _Small()
    template = _template(model, jnp.zeros((1, 8, 8, 3)))
    state = _state(net)
    del state["features.0.bias"]
    state["extra.weight"] = np.zeros(3, np.float32)
    state["classifier.bias"] = np.zeros(7, np.float32)
    with pytest.raises(weights.WeightMismatchError) as e:
        weights.from_torch(state, template, transforms=_TRANSFORMS)
    msg = str(e.value)
    assert "features.0.bias" in msg and "missing" in msg
    assert "extra.weight" in msg and "not used" in msg
    assert "classifier.bias: (7,)" in msg and "(5,)" in msg
    # Not strict: unused entries are fine, the rest is still an error.
    del state["extra.weight"]
    state["classifier.bias"] = np.zeros(5, np.float32)
    state["features.0.bias"] = np.zeros(4, np.float32)
    state["other"] = np.zeros(1)
    with pytest.raises(weights.WeightMismatchError, match="other"):
        weights.from_torch(state, template, transforms=_TRANSFORMS)
    weights.from_torch(state, template, transforms=_TRANSFORMS, strict=False)


def test_exclude_leaves_out_a_head():
    net = _torch_small()
    model = _Small()
    template = _template(model, jnp.zeros((1, 8, 8, 3)))
    state = {k: v for k, v in _state(net).items() if not k.startswith("classifier")}
    out = weights.from_torch(state, template, exclude=("classifier",))
    assert "classifier" not in out["params"] and "features_0" in out["params"]


def test_default_torch_key():
    assert weights.default_torch_key(("layer1_0", "downsample_1")) == "layer1.0.downsample.1"
    assert weights.default_torch_key(("features_0",)) == "features.0"
    # Names with a numbered suffix (Inception's "branch3x3dbl_1") need a family key_fn.
    assert weights.default_torch_key(("Mixed_5b", "branch3x3dbl_1")) == "Mixed_5b.branch3x3dbl.1"
    assert weights.default_torch_key(("Conv2d_1a_3x3", "conv")) == "Conv2d_1a_3x3.conv"
    assert weights.default_torch_key(("branch2_0", "conv")) == "branch2.0.conv"


def test_permute_flatten_inverse():
    to_ours, to_torch = weights.permute_flatten((3, 2, 4))
    w = np.arange(5 * 24, dtype=np.float32).reshape(5, 24)
    np.testing.assert_array_equal(to_torch(to_ours(w)), w)
    # Column of (c, h, w) in PyTorch's order lands at (h, w, c) in ours.
    c, h, ww = 2, 1, 3
    np.testing.assert_array_equal(to_ours(w)[:, (h * 4 + ww) * 3 + c], w[:, c * 8 + h * 4 + ww])


# ---------------------------------------------------------------- files


def test_state_dict_files(tmp_path):
    torch = torch_oracle.torch()
    net = _torch_small()
    state = _state(net)
    torch.save(net.state_dict(), tmp_path / "a.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               tmp_path / "b.pt")  # fmt: skip
    weights.save_state_dict(state, tmp_path / "c.safetensors")
    weights.save_state_dict(state, tmp_path / "d.pth")
    for name in ("a.pth", "b.pt", "c.safetensors", "d.pth"):
        loaded = weights.load_state_dict(tmp_path / name)
        assert sorted(loaded) == sorted(state), name  # safetensors sorts its keys
        for k in state:
            np.testing.assert_array_equal(loaded[k], state[k], err_msg=f"{name}:{k}")


def test_bfloat16_entries_become_float32(tmp_path):
    torch = torch_oracle.torch()
    torch.save({"w": torch.ones(2, dtype=torch.bfloat16)}, tmp_path / "w.pth")
    assert weights.load_state_dict(tmp_path / "w.pth")["w"].dtype == np.float32


def test_bfloat16_arrays_are_saved_as_bfloat16(tmp_path):
    torch = torch_oracle.torch()
    w = jnp.asarray([1.0, -2.5, 3.140625, 1e-20, float("inf")], jnp.bfloat16)
    for name in ("w.pth", "w.safetensors"):
        weights.save_state_dict({"w": np.asarray(w)}, tmp_path / name)
    saved = torch.load(tmp_path / "w.pth", weights_only=True)["w"]
    assert saved.dtype == torch.bfloat16
    np.testing.assert_array_equal(saved.float().numpy(), np.asarray(w, np.float32))
    for name in ("w.pth", "w.safetensors"):
        np.testing.assert_array_equal(
            weights.load_state_dict(tmp_path / name)["w"].astype(np.float32),
            np.asarray(w, np.float32),
        )


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_no_code_is_executed(tmp_path):
    torch_oracle.torch()
    flag = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"w": _Evil(str(flag))}, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only"):
        weights.load_state_dict(evil)
    assert not flag.exists()


def test_files_that_are_not_what_they_claim(tmp_path):
    torch = torch_oracle.torch()
    text = tmp_path / "model.pth"
    text.write_text("not weights at all")
    with pytest.raises(ValueError, match="not a PyTorch file"):
        weights.load_state_dict(text)
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a safetensors file"):
        weights.load_state_dict(fake)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((20).to_bytes(8, "little") + b'{"a": {"dtype": 1}}   ')
    with pytest.raises(ValueError, match="not a valid safetensors"):
        weights.load_state_dict(broken)
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"PK\x03\x04 zip, not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        weights.load_keras_weights(h5)
    with pytest.raises(ValueError, match=r"unknown weight file type '\.npz'"):
        weights.load_state_dict(text.rename(tmp_path / "model.npz"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        weights.load_state_dict(tmp_path / "nothing.pth")
    torch.save({"w": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(ValueError, match="'w' of the state dict is a list"):
        weights.load_state_dict(tmp_path / "list.pth")
    torch.save([torch.ones(1)], tmp_path / "seq.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        weights.load_state_dict(tmp_path / "seq.pth")
    with pytest.raises(ValueError, match="unknown weight file type"):
        weights.save_state_dict({}, tmp_path / "x.npy")


def test_empty_hdf5_is_an_error(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(2))
    with pytest.raises(ValueError, match="holds no Keras weights"):
        weights.load_keras_weights(tmp_path / "empty.h5")


# ---------------------------------------------------------------- Keras


class _SmallKeras(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = Conv(4, 3, padding="VALID", name="c1")(x)
        x = nn.relu(BatchNorm(epsilon=1e-3, name="bn")(x, train=train))
        x = DepthwiseSeparableConv(5, 3, depth_multiplier=2, padding="VALID", name="sep")(x)
        return nn.Dense(2, name="fc")(jnp.mean(x, axis=(1, 2))), {}


@pytest.fixture(scope="module")
def keras_small():
    keras = torch_oracle.keras()
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inp)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(x))
    x = keras.layers.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x)
    x = keras.layers.Dense(2, name="fc")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, x)
    bn = model.get_layer("bn")
    rng = np.random.default_rng(1)
    bn.set_weights([rng.uniform(0.5, 2, 4), rng.normal(size=4), rng.normal(size=4),
                    rng.uniform(0.5, 2, 4)])  # fmt: skip
    return model


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_from_keras_matches_keras(keras_small, tmp_path, suffix):
    path = tmp_path / f"small{suffix}"
    if suffix == ".h5":
        from keras.src.legacy.saving import legacy_h5_format

        legacy_h5_format.save_weights_to_hdf5_group(__import__("h5py").File(path, "w"), keras_small)
    else:
        keras_small.save_weights(path)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    model = _SmallKeras()
    variables = weights.from_keras(weights.load_keras_weights(path), _template(model, x))
    ours, _ = model.apply(variables, x)
    np.testing.assert_allclose(ours, np.asarray(keras_small(x)), atol=1e-5, rtol=1e-5)


def test_from_keras_errors(keras_small, tmp_path):
    path = tmp_path / "small.weights.h5"
    keras_small.save_weights(path)
    layers = weights.load_keras_weights(path)
    model = _SmallKeras()
    template = _template(model, jnp.zeros((1, 8, 8, 3)))
    bad = dict(layers)
    bad["fc"] = bad["fc"][:1]
    bad["ghost"] = [np.zeros(1)]
    del bad["c1"]
    with pytest.raises(weights.WeightMismatchError) as e:
        weights.from_keras(bad, template)
    msg = str(e.value)
    assert "c1 (for c1)" in msg and "ghost" in msg and "fc: 1 weights" in msg
    bad = dict(layers)
    bad["bn"] = [np.zeros(3)] * 4
    with pytest.raises(weights.WeightMismatchError, match=r"bn/scale: \(3,\)"):
        weights.from_keras(bad, template)
