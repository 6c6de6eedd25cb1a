"""One run per workdir: the lock file, its holder, stale locks, and two real launches."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnn_jax.data import resolve_data_dir
from cnn_jax.train import WorkdirLock, WorkdirLockedError, train_and_evaluate
from cnn_jax.train.workdir_lock import LOCK_NAME
from experiments.configs import lenet5_mnist

ROOT = Path(__file__).resolve().parents[1]
needs_mnist = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(workdir, **holder):
    (workdir / LOCK_NAME).write_text(json.dumps(holder))


def test_lock_file_names_the_holder_and_is_released(tmp_path):
    with WorkdirLock(str(tmp_path)) as lock:
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder == lock.holder and holder["token"] > 0 and "start" in holder
        with pytest.raises(WorkdirLockedError) as e:
            WorkdirLock(str(tmp_path)).acquire()
        assert f"pid {os.getpid()}" in str(e.value) and socket.gethostname() in str(e.value)
        assert holder["start"] in str(e.value)
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = _dead_pid()
    _write_lock(tmp_path, host=socket.gethostname(), pid=pid, start="2026-01-01T00:00:00+00:00")
    with caplog.at_level(logging.WARNING), WorkdirLock(str(tmp_path)):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert any(
        "taking over the lock" in r.getMessage() and f"pid {pid}" in r.getMessage()
        for r in caplog.records
    ), caplog.text
    # A pid now used by another program (its start time differs) is a dead holder too.
    _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), start="x", proc_start=1)
    with WorkdirLock(str(tmp_path)):
        pass


def test_lock_from_another_host_or_unreadable_is_an_error(tmp_path):
    _write_lock(tmp_path, host="elsewhere", pid=_dead_pid(), start="2026-01-01T00:00:00+00:00")
    with pytest.raises(WorkdirLockedError, match=r"host 'elsewhere', pid \d+, started 2026"):
        WorkdirLock(str(tmp_path)).acquire()
    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.raises(WorkdirLockedError, match="unreadable"):
        WorkdirLock(str(tmp_path)).acquire()


def test_run_on_a_locked_workdir_fails_at_once_and_a_failed_run_releases(tmp_path):
    config = lenet5_mnist.get_config("runlocal")
    config.dataset, config.normalization, config.pad_to = "synthetic", None, None
    with WorkdirLock(str(tmp_path)), pytest.raises(WorkdirLockedError, match=str(os.getpid())):
        train_and_evaluate(config, str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()  # it touched nothing
    config.augment = ("no_such_augmentation",)  # fails during set-up, holding the lock
    with pytest.raises(ValueError, match="unknown augmentation"):
        train_and_evaluate(config, str(tmp_path))
    assert not (tmp_path / LOCK_NAME).exists()


def _launch(workdir, *flags):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [
        sys.executable,
        "-m",
        "experiments.main",
        "--config=experiments/configs/lenet5_mnist.py:runlocal",
        f"--workdir={workdir}",
        "--config.progress_bar=False",
        *flags,
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@needs_mnist
def test_two_launches_on_one_workdir_and_a_killed_holder(tmp_path):
    work = tmp_path / "run"
    holder = _launch(work, "--config.num_train_steps=1000000")  # runs until killed
    try:
        t0 = time.time()
        while not (work / LOCK_NAME).exists():
            assert holder.poll() is None, holder.stdout.read()
            assert time.time() - t0 < 300, "the first run took no lock"
            time.sleep(0.05)
        second = _launch(work, "--config.num_train_steps=4")
        out, _ = second.communicate(timeout=300)
        assert second.returncode != 0, out
        assert "WorkdirLockedError" in out and f"pid {holder.pid}" in out, out
        assert holder.poll() is None  # the first run goes on
        assert not (work / "checkpoints" / "4").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # no chance to release the lock
        holder.communicate()
    assert json.loads((work / LOCK_NAME).read_text())["pid"] == holder.pid
    third = _launch(work, "--config.num_train_steps=4")
    out, _ = third.communicate(timeout=300)
    assert third.returncode == 0, out
    assert "taking over the lock" in out and f"pid {holder.pid}" in out, out
    assert not (work / LOCK_NAME).exists()


def test_empty_lock_left_by_a_killed_creator_is_taken_over(tmp_path):
    """A holder killed between O_EXCL and its write leaves an empty file: stale once old."""
    from cnn_jax.train import workdir_lock

    path = tmp_path / ".lock"
    path.write_text("")
    old = time.time() - 60
    os.utime(path, (old, old))
    lock = workdir_lock.WorkdirLock(str(tmp_path))
    lock.acquire()
    try:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert not path.exists()


def test_fresh_unreadable_lock_is_an_error(tmp_path):
    from cnn_jax.train import workdir_lock

    (tmp_path / ".lock").write_text("{not json")
    with pytest.raises(workdir_lock.WorkdirLockedError, match="unreadable"):
        workdir_lock.WorkdirLock(str(tmp_path)).acquire()


def test_failed_write_of_the_lock_leaves_no_file(tmp_path, monkeypatch):
    from cnn_jax.train import workdir_lock

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(workdir_lock.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        workdir_lock.WorkdirLock(str(tmp_path)).acquire()
    assert not (tmp_path / ".lock").exists()


def test_process_0_tells_the_others_when_it_cannot_take_the_lock(tmp_path, monkeypatch):
    """Any failure of process 0 (not only a held lock) is shared as token 0, so that the
    other processes fail too instead of waiting for a token."""
    from cnn_jax.train import workdir_lock

    shared = []
    lock = workdir_lock.WorkdirLock(str(tmp_path), process_index=0, process_count=2)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(lock, "_take", read_only)
    monkeypatch.setattr(lock, "_share", lambda token: shared.append(token) or token)
    with pytest.raises(PermissionError):
        lock.acquire()
    assert shared == [0]
