"""Training under faults: failed checkpoint writes, damaged checkpoints, torn metric logs,
changed configs on resume, reruns of finished workdirs (docs/FAULTS.md lists each)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from absl import logging as absl_logging

from cnn_jax.data import resolve_data_dir
from cnn_jax.train import checkpoint_integrity as integrity
from cnn_jax.train import loop as loop_lib
from cnn_jax.train import train_and_evaluate
from cnn_jax.train.checkpoint import (
    Checkpointer,
    CheckpointMismatchError,
    CheckpointWriteError,
    CorruptCheckpointError,
)
from cnn_jax.train.config_record import ConfigChangedError, check_or_record
from cnn_jax.train.metrics import MetricWriter

ROOT = Path(__file__).resolve().parents[1]


def _tree(value):
    return {
        "step": np.asarray(value, np.int32),
        "params": {"conv": {"kernel": np.full((3, 3, 1, 4), value, np.float32)}},
    }


def _saved(tmp_path, steps=(10, 20), **kw):
    ckpt = Checkpointer(str(tmp_path / "checkpoints"), **kw)
    for s in steps:
        ckpt.save(s, _tree(s), extra={"pending": [[s, {"loss": 1.0}]]})
    return ckpt


def _largest_file(step_dir):
    files = [
        p for p in Path(step_dir).rglob("*") if p.is_file() and p.name != integrity.CHECKSUM_FILE
    ]
    return max(files, key=lambda p: p.stat().st_size)


# --- 1: a failed checkpoint write stops the run at once ------------------------------


_FAILING_SAVE = """
import os, shutil, sys, threading
import numpy as np
from cnn_jax.train.checkpoint import Checkpointer, CheckpointWriteError
d = sys.argv[1]
ckpt = Checkpointer(d)
ckpt.save(1, {"a": np.ones(3)})
shutil.rmtree(d)
open(d, "w").write("x")  # the folder became a file: every later write fails
try:
    ckpt.save(2, {"a": np.ones(3)})
except CheckpointWriteError as e:
    print("ERROR:", e)
    ckpt.close()
    for t in threading.enumerate():  # winding-down threads finish; a stuck one stays
        if t is not threading.main_thread() and not t.daemon:
            t.join(timeout=60)
    print("threads:", [t.name for t in threading.enumerate() if not t.daemon])
    sys.exit(3)
"""


def test_failed_checkpoint_write_raises_at_once_and_the_process_exits(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _FAILING_SAVE, str(tmp_path / "checkpoints")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # the asynchronous save hung here forever in threading._shutdown
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "could not write checkpoint 2 to" in proc.stdout
    assert "threads: ['MainThread']" in proc.stdout


def test_checkpoints_path_that_is_a_file_is_a_named_error(tmp_path):
    (tmp_path / "checkpoints").write_text("x")
    with pytest.raises(CheckpointWriteError, match=r"checkpoint folder .*checkpoints"):
        Checkpointer(str(tmp_path / "checkpoints"))


def test_write_error_of_the_sidecar_is_a_checkpoint_write_error(tmp_path, monkeypatch):
    ckpt = Checkpointer(str(tmp_path / "checkpoints"))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(integrity, "atomic_write_json", full_disk)
    with pytest.raises(CheckpointWriteError, match=r"checkpoint 5 .*No space left"):
        ckpt.save(5, _tree(5))
    ckpt.close()


# --- 6 and 14: checksums, fallback to the newest intact checkpoint --------------------


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "metadata"])
def test_damaged_newest_checkpoint_falls_back_with_a_warning_naming_both(tmp_path, caplog, damage):
    ckpt = _saved(tmp_path)
    step_dir = tmp_path / "checkpoints" / "20"
    if damage == "flip":
        f = _largest_file(step_dir)
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
    elif damage == "truncate":
        f = _largest_file(step_dir)
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:
        (step_dir / "_CHECKPOINT_METADATA").write_text("{not json")
    absl_logging.get_absl_logger().propagate = True
    restored = ckpt.restore_latest(_tree(0))
    assert restored.step == 10
    np.testing.assert_array_equal(restored.tree["params"]["conv"]["kernel"], 10)
    assert restored.extra == {"pending": [[10, {"loss": 1.0}]]}
    (message,) = [w for w in _warnings(caplog) if "checkpoint 20" in w]
    assert "resuming from checkpoint 10" in message
    assert (tmp_path / "checkpoints.corrupt" / "20").is_dir()  # kept for inspection
    assert ckpt.latest_step() == 10
    with pytest.raises(CorruptCheckpointError, match="checkpoint 20"):
        integrity.verify(str(tmp_path / "checkpoints.corrupt"), 20)
    ckpt.close()


def test_restore_of_a_flipped_bit_is_an_error_naming_the_checkpoint(tmp_path):
    ckpt = _saved(tmp_path, steps=(10,))
    f = _largest_file(tmp_path / "checkpoints" / "10")
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x80
    f.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint 10 \(.*\) does not match"):
        ckpt.restore(_tree(0))
    with pytest.raises(CorruptCheckpointError, match="no intact checkpoint"):
        ckpt.restore_latest(_tree(0))
    ckpt.close()


def test_save_interrupted_before_its_checksum_is_not_restored(tmp_path):
    ckpt = _saved(tmp_path)
    os.remove(tmp_path / "checkpoints" / "20" / integrity.CHECKSUM_FILE)
    assert ckpt.restore_latest(_tree(0)).step == 10
    ckpt.save(20, _tree(20))  # the same step saved again is complete
    assert ckpt.restore_latest(_tree(0)).step == 20
    ckpt.close()


def test_checkpoints_written_before_checksums_restore_unverified(tmp_path):
    ckpt = _saved(tmp_path)
    for s in (10, 20):
        os.remove(tmp_path / "checkpoints" / str(s) / integrity.CHECKSUM_FILE)
    os.remove(tmp_path / "checkpoints" / integrity.MARKER_FILE)
    assert ckpt.restore_latest(_tree(0)).step == 20
    ckpt.close()


def test_shape_changed_resume_names_the_variable_in_one_line(tmp_path):
    ckpt = _saved(tmp_path, steps=(10,))
    other = _tree(0)
    other["params"]["conv"]["kernel"] = np.zeros((5, 5, 1, 4), np.float32)
    with pytest.raises(CheckpointMismatchError) as info:
        ckpt.restore_latest(other)
    message = str(info.value)
    assert "checkpoint 10" in message and "['params']['conv']['kernel']" in message
    assert "saved (3, 3, 1, 4), model (5, 5, 1, 4)" in message
    assert ckpt.latest_step() == 10  # an intact checkpoint is never set aside
    ckpt.close()


# --- 13: a torn last line of metrics.jsonl ---------------------------------------------


def test_torn_metrics_tail_is_dropped_with_a_warning_and_rewritten_atomically(
    tmp_path, caplog, monkeypatch
):
    rows = [{"step": s, "split": "train", "loss": 1.0 / s} for s in (2, 4, 6)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(text + '{"step": 8, "split": "tr')
    (tmp_path / "metrics.csv").write_text("step,split,name,value\n2,train,loss,0.5\n8,tra")
    absl_logging.get_absl_logger().propagate = True
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(b), real_replace(a, b)))
    MetricWriter(str(tmp_path), resume_step=4).close()
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(
        json.dumps(r) + "\n" for r in rows[:2]
    )
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "step,split,name,value",
        "2,train,loss,0.5",
    ]
    assert any("torn last line" in w for w in _warnings(caplog))
    assert {os.path.basename(p) for p in replaced} == {"metrics.jsonl", "metrics.csv"}


def test_bad_metrics_line_before_the_end_is_an_error_naming_the_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 2, "split": "train"}\ngarbage\n{"step": 4}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2"):
        MetricWriter(str(tmp_path), resume_step=4)


# --- 5: the config recorded at the first start; changes on resume ---------------------


def _small_config(**kw):
    from experiments.configs import lenet5_mnist

    c = lenet5_mnist.get_config("runlocal")
    for k, v in kw.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def test_config_change_on_resume_is_refused_listing_old_and_new(tmp_path, caplog):
    check_or_record(_small_config(), str(tmp_path), resuming=False)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["batch_size"] == 32
    changed = _small_config(batch_size=16, seed=3, **{"optim.learning_rate": 0.5})
    with pytest.raises(ConfigChangedError) as info:
        check_or_record(changed, str(tmp_path), resuming=True)
    message = str(info.value)
    assert "batch_size: 32 -> 16" in message and "seed: 0 -> 3" in message
    assert "optim.learning_rate: 0.005 -> 0.5" in message
    assert "allow_config_change" in message
    # a change that does not alter the trajectory passes with an INFO line
    absl_logging.get_absl_logger().propagate = True
    caplog.set_level("INFO")
    check_or_record(_small_config(log_every_steps=3), str(tmp_path), resuming=True)
    assert any("log_every_steps: 5 -> 3" in r.getMessage() for r in caplog.records)
    # training a cosine run longer changes its schedule: refused, then asked for
    with pytest.raises(ConfigChangedError, match="num_train_steps: 20 -> 40"):
        check_or_record(_small_config(num_train_steps=40), str(tmp_path), resuming=True)
    # a constant schedule does not span the run length: training longer is free
    (tmp_path / "constant").mkdir()
    constant = {"optim.schedule": "constant"}
    check_or_record(_small_config(**constant), str(tmp_path / "constant"), resuming=False)
    check_or_record(_small_config(num_train_steps=40, **constant), str(tmp_path / "constant"), True)
    longer = _small_config(num_train_steps=40, allow_config_change=True)
    check_or_record(longer, str(tmp_path), resuming=True)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["num_train_steps"] == 40


def test_eval_frequency_is_free_unless_it_steers_the_learning_rate(tmp_path):
    check_or_record(_small_config(), str(tmp_path), resuming=False)
    check_or_record(_small_config(eval_every_steps=7), str(tmp_path), resuming=True)
    plateau = {"optim.reduce_on_plateau.metric": "test_loss"}
    (tmp_path / "p").mkdir()
    check_or_record(_small_config(**plateau), str(tmp_path / "p"), resuming=False)
    with pytest.raises(ConfigChangedError, match="eval_every_steps"):
        check_or_record(_small_config(eval_every_steps=7, **plateau), str(tmp_path / "p"), True)


# --- 11 and 12: reruns and resumes through the loop ------------------------------------

needs_mnist = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


def _rows(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("examples_per_second", None)  # a timing
    return rows


@needs_mnist
def test_rerun_of_a_finished_workdir_returns_the_final_evaluation(tmp_path):
    c = _small_config(num_train_steps=6, log_every_steps=3, eval_every_steps=6, progress_bar=False)
    first = train_and_evaluate(c, str(tmp_path))
    again = train_and_evaluate(c, str(tmp_path))
    assert again["steps"] == 6
    for k in ("test_loss", "test_accuracy", "test_top5_accuracy", "test_count"):
        assert again[k] == first[k], k
    assert [r["step"] for r in _rows(tmp_path) if r["split"] == "test"] == [6]
    shorter = _small_config(
        num_train_steps=4, log_every_steps=3, progress_bar=False, allow_config_change=True
    )
    with pytest.raises(ValueError, match=r"\(4 steps.*below the step of the newest .*\(6\)"):
        train_and_evaluate(shorter, str(tmp_path))


@needs_mnist
def test_resumed_run_logs_the_metrics_of_an_uninterrupted_one(tmp_path, monkeypatch):
    c = _small_config(
        num_train_steps=8, log_every_steps=4, checkpoint_every_steps=3, progress_bar=False
    )
    train_and_evaluate(c, str(tmp_path / "straight"))
    calls = []

    def preempt_at_step_5(flag, count, sync):
        calls.append(flag)
        return len(calls) == 5

    monkeypatch.setattr(loop_lib, "agreed", preempt_at_step_5)
    summary = train_and_evaluate(c, str(tmp_path / "resumed"))
    assert summary["preempted"] and summary["steps"] == 5
    monkeypatch.undo()
    train_and_evaluate(c, str(tmp_path / "resumed"))
    assert _rows(tmp_path / "resumed") == _rows(tmp_path / "straight")


@needs_mnist
def test_launcher_with_a_checkpoints_file_exits_at_once_with_one_error_line(tmp_path):
    (tmp_path / "checkpoints").write_text("x")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.main",
            "--config=experiments/configs/lenet5_mnist.py:runlocal",
            f"--workdir={tmp_path}",
            "--config.progress_bar=False",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # it hung here in threading._shutdown
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "CheckpointWriteError: cannot create the checkpoint folder" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_reinit_pattern_matching_nothing_names_the_config_key(tmp_path):
    import jax
    import optax
    from ml_collections import ConfigDict

    from cnn_jax.models import LeNet5
    from cnn_jax.train import build, create_train_state

    state = create_train_state(LeNet5(), optax.sgd(0.1), jax.random.key(0), (1, 32, 32, 1))
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read: the patterns are checked first")
    init = ConfigDict(
        dict(source="torchvision", name="resnet18", path=str(weights), reinit=("/head/",))
    )
    with pytest.raises(ValueError, match=r"`config.init_from.reinit` pattern\(s\) \['/head/'\]"):
        build.init_from(init, state)


def test_init_from_may_change_on_resume(tmp_path):
    """The weights a fresh start loads are never read on a resume: a moved file is fine."""
    start = {"init_from.name": "resnet18", "init_from.path": "/old/place/r18.pth"}
    check_or_record(_small_config(**start), str(tmp_path), resuming=False)
    moved = {"init_from.name": "resnet18", "init_from.path": "/new/place/r18.pth"}
    check_or_record(_small_config(**moved), str(tmp_path), resuming=True)
    with pytest.raises(ConfigChangedError, match="seed: 0 -> 1"):  # others stay strict
        check_or_record(_small_config(seed=1, **moved), str(tmp_path), resuming=True)


def test_one_kept_checkpoint_is_refused():
    """With one kept checkpoint, a crash between orbax's deletion of the older step and
    the new step's digest would leave nothing intact to resume from."""
    from cnn_jax.train.config import validate_config

    validate_config(_small_config(keep_checkpoints=2))
    with pytest.raises(ValueError, match=r"keep_checkpoints` \(=1\) must be at least 2"):
        validate_config(_small_config(keep_checkpoints=1))
