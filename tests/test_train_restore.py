"""cnn_jax.train.restore: a run read back from its workdir (config record + checkpoint)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.train import config_record
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.restore import load_run, raw_split, read_config_record, restore_variables
from experiments.configs import lenet5_mnist


def _write_run(workdir, config, steps=(1, 2)):
    from cnn_jax.train.build import build_model

    model = build_model(config, 10)
    x = jnp.zeros((1, 32, 32, 1))
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    saved = {}
    try:
        for step in steps:
            variables = model.init(jax.random.key(step), x)
            ckpt.save(step, {"params": variables["params"], "step": jnp.asarray(step)})
            saved[step] = variables["params"]
    finally:
        ckpt.close()
    config_record.check_or_record(config, str(workdir), resuming=False)
    return model, saved


def test_load_run_restores_the_newest_checkpoint_and_the_recorded_config(tmp_path):
    config = lenet5_mnist.get_config()
    model, saved = _write_run(tmp_path, config)
    run = load_run(str(tmp_path))
    assert run.step == 2
    assert run.config.model == config.model
    assert run.num_classes == 10
    assert set(run.variables) == {"params"}  # LeNet-5 has no batch statistics
    for got, want in zip(jax.tree.leaves(run.params), jax.tree.leaves(saved[2])):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    x = jnp.ones((2, 32, 32, 1))
    np.testing.assert_allclose(
        np.asarray(run.model.apply(run.variables, x)[0]),
        np.asarray(model.apply({"params": saved[2]}, x)[0]),
        rtol=1e-6,
    )
    older, step = restore_variables(str(tmp_path), step=1)
    assert step == 1
    for got, want in zip(jax.tree.leaves(older["params"]), jax.tree.leaves(saved[1])):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_read_config_record_round_trips_nested_keys(tmp_path):
    config = lenet5_mnist.get_config()
    config_record.check_or_record(config, str(tmp_path), resuming=False)
    back = read_config_record(str(tmp_path))
    assert back.optim.learning_rate == config.optim.learning_rate
    assert back.dataset == config.dataset


@pytest.mark.parametrize(
    "name", ["wavenet_fsdd", "spectrogram_cnn_fsdd", "textcnn_mr", "capsnet_mnist"]
)
def test_a_model_built_from_the_record_equals_and_hashes_like_the_runs(name, tmp_path):
    """JSON stores tuples as lists; the record gives tuples back (static jit arguments)."""
    import importlib

    from cnn_jax.train.build import build_model

    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    config_record.check_or_record(config, str(tmp_path), resuming=False)
    back = read_config_record(str(tmp_path))
    original, rebuilt = build_model(config, 10), build_model(back, 10)
    assert rebuilt == original
    assert hash(rebuilt) == hash(original)
    assert back.to_dict() == config.to_dict()


def test_missing_record_or_checkpoint_raise_naming_the_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        read_config_record(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no checkpoints folder"):
        load_run(str(tmp_path), lenet5_mnist.get_config())
    assert not (tmp_path / "checkpoints").exists()  # reading creates nothing
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        restore_variables(str(tmp_path))


def test_raw_split_is_the_stored_arrays():
    config = lenet5_mnist.get_config()
    test = raw_split(config)
    assert test["image"].dtype == np.uint8 and test["image"].shape[1:] == (28, 28, 1)
    assert len(test["label"]) == len(test["image"]) == 10000


def _adam_like_checkpoint(directory):
    ckpt = Checkpointer(str(directory))
    tree = {
        "params": {"w": np.arange(12, dtype=np.float32).reshape(3, 4)},
        "batch_stats": {"mean": np.full((4,), 2.0, np.float32)},
        "opt_state": {"mu": np.ones((3, 4), np.float32), "nu": np.ones((3, 4), np.float32)},
        "step": np.asarray(7, np.int32),
    }
    ckpt.save(7, tree)
    return ckpt, tree


def test_restore_keys_reads_only_the_named_keys_on_the_first_device(tmp_path):
    ckpt, tree = _adam_like_checkpoint(tmp_path / "checkpoints")
    try:
        got = ckpt.restore_keys(("params", "batch_stats", "absent"))
        assert set(got) == {"params", "batch_stats"}  # no optimizer state, absent omitted
        np.testing.assert_array_equal(np.asarray(got["params"]["w"]), tree["params"]["w"])
        np.testing.assert_array_equal(
            np.asarray(got["batch_stats"]["mean"]), tree["batch_stats"]["mean"]
        )
        assert got["params"]["w"].devices() == {jax.local_devices()[0]}
        assert ckpt.restore_keys(("absent",)) == {}
    finally:
        ckpt.close()
    variables, step = restore_variables(str(tmp_path))
    assert step == 7 and set(variables) == {"params", "batch_stats"}


def test_restore_keys_of_a_damaged_checkpoint_is_an_error_naming_it(tmp_path):
    from pathlib import Path

    from cnn_jax.train import checkpoint_integrity as integrity
    from cnn_jax.train.checkpoint import CorruptCheckpointError

    ckpt, _ = _adam_like_checkpoint(tmp_path / "checkpoints")
    files = [
        p
        for p in Path(tmp_path / "checkpoints" / "7").rglob("*")
        if p.is_file() and p.name != integrity.CHECKSUM_FILE
    ]
    f = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x80
    f.write_bytes(bytes(data))
    try:
        with pytest.raises(CorruptCheckpointError, match=r"checkpoint 7 \("):
            ckpt.restore_keys(("params",))
    finally:
        ckpt.close()
    empty = Checkpointer(str(tmp_path / "empty"))
    try:
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            empty.restore_keys(("params",))
    finally:
        empty.close()
