"""cnn_jax.weights under hostile files and bad values: each file is crafted by the test.

HDF5 files with external storage, virtual datasets and links, a compressed dataset
declaring a huge shape, and weight files holding NaN/Inf or negative variances; none
of these needs PyTorch or Keras.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import weights
from cnn_jax.layers import BatchNorm, Conv

h5py = pytest.importorskip("h5py")

_SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 2  # 64 bytes that are not weights


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "passwd"
    path.write_bytes(_SECRET)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.frombuffer(_SECRET, np.float32))
    return path, other


def _legacy(path, make):
    """A legacy-layout file with one layer ``dense``; ``make(group, name)`` makes its kernel."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        g = f.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel:0"]
        make(g.create_group("dense"), "kernel:0")
    return path


def _keras3(path, make):
    """A Keras 3 ``.weights.h5`` with one layer ``dense``; ``make(group, name)`` makes var 0."""
    with h5py.File(path, "w") as f:
        vars_ = f.create_group("layers/dense/vars")
        vars_.attrs["name"] = "dense"
        make(vars_, "0")
    return path


def _makers(secret_path, other):
    def external(g, name):
        g.create_dataset(name, shape=(16,), dtype="<f4", external=[(str(secret_path), 0, 64)])

    def virtual(g, name):
        layout = h5py.VirtualLayout(shape=(16,), dtype="<f4")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(16,))
        g.create_virtual_dataset(name, layout)

    def soft(g, name):
        g.file.create_dataset("elsewhere", data=np.ones(16, np.float32))
        g[name] = h5py.SoftLink("/elsewhere")

    def external_link(g, name):
        g[name] = h5py.ExternalLink(str(other), "/data")

    return {
        "external storage": external,
        "virtual dataset": virtual,
        "soft link": soft,
        "external link": external_link,
    }


@pytest.mark.parametrize("layout", [_legacy, _keras3], ids=["legacy", "keras3"])
@pytest.mark.parametrize(
    "kind", ["external storage", "virtual dataset", "soft link", "external link"]
)
def test_hdf5_indirections_are_refused(tmp_path, secret, layout, kind):
    path = layout(tmp_path / "w.h5", _makers(*secret)[kind])
    with pytest.raises(ValueError) as e:
        weights.load_keras_weights(path)
    msg = str(e.value)
    assert str(path) in msg and kind in msg
    assert ("/dense/dense/kernel:0" if layout is _legacy else "/layers/dense/vars/0") in msg


def test_hdf5_linked_layer_group_is_refused(tmp_path, secret):
    _, other = secret
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_group("layers")
        f["layers/dense"] = h5py.ExternalLink(str(other), "/")
    with pytest.raises(ValueError, match=r"'/layers/dense' is an external link"):
        weights.load_keras_weights(path)


def _bomb(path, n: int):
    """A small file whose gzip-compressed dataset declares ``n`` float32 (never written)."""

    def make(g, name):
        g.create_dataset(
            name, shape=(n,), dtype="<f4", chunks=(min(n, 1 << 16),), compression="gzip"
        )

    return _legacy(path, make)


def test_hdf5_declared_size_is_checked_before_reading(tmp_path):
    path = _bomb(tmp_path / "bomb.h5", (4 << 30) // 4 + 1)  # 4 GiB + 4 bytes declared
    assert path.stat().st_size < 64 << 10
    with pytest.raises(ValueError) as e:
        weights.load_keras_weights(path)
    msg = str(e.value)
    assert str(path) in msg and "/dense/dense/kernel:0" in msg and str(4 << 30) in msg
    with pytest.raises(ValueError, match=r"`max_bytes` \(=1000\)"):
        weights.load_keras_weights(_bomb(tmp_path / "small.h5", 251), max_bytes=1000)
    assert weights.load_keras_weights(tmp_path / "small.h5", max_bytes=1004)["dense"][0].shape == (
        251,
    )


def test_load_keras_bounds_the_file_by_the_model(tmp_path):
    # 100M float32 (400 MB) declared: more than ResNet50V2 holds, refused before reading.
    path = _bomb(tmp_path / "bomb.h5", 100_000_000)
    with pytest.raises(ValueError, match=r"`max_bytes`"):
        weights.load_keras("ResNet50V2", path)


# ------------------------------------------------------------------ values


class _Small(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = Conv(4, 3, padding=1, name="features_0")(x)
        x = nn.relu(BatchNorm(name="features_1")(x, train=train))
        return nn.Dense(3, name="classifier")(x.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def small():
    model = _Small()
    x = jnp.zeros((1, 4, 4, 3))
    variables = model.init(jax.random.key(0), x)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    return variables, template


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("features.0.weight", np.nan, r"'features\.0\.weight'.*non-finite"),
        ("classifier.bias", np.inf, r"'classifier\.bias'.*non-finite"),
        ("features.1.running_mean", -np.inf, r"'features\.1\.running_mean'.*non-finite"),
        ("features.1.running_var", -0.5, r"'features\.1\.running_var'.*negative"),
    ],
)
def test_bad_values_in_a_weight_file_are_refused(tmp_path, small, key, value, match):
    variables, template = small
    state = weights.to_torch(variables)
    state[key] = state[key].copy()
    state[key].flat[1] = value
    path = tmp_path / "w.safetensors"
    weights.save_state_dict(state, path)
    loaded = weights.load_state_dict(path)
    with pytest.raises(ValueError, match=match):
        weights.from_torch(loaded, template)
    # The same file without the fault loads.
    state[key].flat[1] = 1.0
    weights.from_torch(state, template)


@pytest.mark.parametrize(
    "index, value, match",
    [(0, np.nan, r"'features_1/scale'.*non-finite"), (3, -1.0, r"'features_1/var'.*negative")],
)
def test_bad_values_in_keras_weights_are_refused(tmp_path, small, index, value, match):
    variables, template = small
    bn = variables["batch_stats"]["features_1"]
    arrays = [np.array(variables["params"]["features_1"][k]) for k in ("scale", "bias")]
    arrays += [np.array(bn["mean"]), np.array(bn["var"])]
    arrays[index][0] = value
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        for name, layer in [
            ("features_0", [variables["params"]["features_0"][k] for k in ("kernel", "bias")]),
            ("features_1", arrays),
            ("classifier", [variables["params"]["classifier"][k] for k in ("kernel", "bias")]),
        ]:
            g = f.create_group(f"layers/{name}/vars")
            g.attrs["name"] = name
            for i, a in enumerate(layer):
                g.create_dataset(str(i), data=np.asarray(a))
    with pytest.raises(ValueError, match=match):
        weights.from_keras(weights.load_keras_weights(path), template)


def test_exclude_pattern_matching_nothing_is_an_error(small):
    variables, template = small
    state = weights.to_torch(variables)
    with pytest.raises(ValueError, match=r"`exclude` pattern\(s\) \['/fc/'\] match no variable"):
        weights.from_torch(state, template, exclude=("/fc/",))
    with pytest.raises(ValueError, match=r"`exclude`.*'\['"):
        weights.from_torch(state, template, exclude=("[",))
    keras = {
        "features_0": [np.asarray(variables["params"]["features_0"][k]) for k in ("kernel", "bias")]
    }
    with pytest.raises(ValueError, match=r"\['head'\] match no variable"):
        weights.from_keras(keras, template, exclude=("head",), strict=False)
    out = weights.from_torch(state, template, exclude=("/classifier/",))
    assert "classifier" not in out["params"]


def test_reinit_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match=r"`reinit` pattern\(s\) \['/head/'\] match no variable"):
        weights.load_torchvision(
            "resnet18", {}, num_classes=10, reinit=("/head/",), key=jax.random.key(0)
        )


# ------------------------------------------------------------------ safetensors prefix


def test_safetensors_module_prefix_is_removed(tmp_path, small):
    variables, template = small
    state = weights.to_torch(variables)
    path = tmp_path / "ddp.safetensors"
    weights.save_state_dict({f"module.{k}": v for k, v in state.items()}, path)
    loaded = weights.load_state_dict(path)
    assert sorted(loaded) == sorted(state)
    weights.from_torch(loaded, template)
    # Only a prefix on every key is a DataParallel wrapper.
    weights.save_state_dict({"module.a": np.ones(1), "b": np.ones(1)}, path)
    assert sorted(weights.load_state_dict(path)) == ["b", "module.a"]
