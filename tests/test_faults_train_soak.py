"""Soak (slow): a runlocal training killed at 20 seeded random points (SIGKILL and
SIGTERM, some during checkpoint saves) and restarted each time ends bitwise equal to an
uninterrupted run, with the same logged metrics (docs/FAULTS.md)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from cnn_jax.data import resolve_data_dir
from cnn_jax.train import checkpoint_integrity as integrity
from cnn_jax.train.checkpoint import Checkpointer

ROOT = Path(__file__).resolve().parents[1]
needs_mnist = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


def _rows(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("examples_per_second", None)  # a timing
    return rows


# --- soak: a run killed at 20 random points ends like an uninterrupted one -------------

SOAK = (
    "--config=experiments/configs/lenet5_mnist.py:runlocal",
    "--config.progress_bar=False",
    "--config.num_train_steps=80",
    "--config.checkpoint_every_steps=3",
    "--config.log_every_steps=2",
    "--config.eval_every_steps=10",
)


def _launch(workdir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", *SOAK],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _steps_on_disk(workdir):
    d = Path(workdir) / "checkpoints"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def _saving(workdir):
    """A save under way: orbax's temporary folder, or a step folder without its digest."""
    d = Path(workdir) / "checkpoints"
    if not d.is_dir():
        return False
    for p in d.iterdir():
        if "tmp" in p.name or (p.name.isdigit() and not (p / integrity.CHECKSUM_FILE).exists()):
            return True
    return False


def _final_params(workdir):
    ckpt = Checkpointer(str(Path(workdir) / "checkpoints"))
    try:
        return ckpt.latest_step(), ckpt.restore()  # verified against its digest
    finally:
        ckpt.close()


@pytest.mark.slow
@needs_mnist
def test_soak_run_killed_at_20_random_points_ends_bitwise_equal(tmp_path):
    straight = _launch(tmp_path / "straight")
    out, _ = straight.communicate(timeout=900)
    assert straight.returncode == 0, out
    rng = random.Random(20)
    work = tmp_path / "killed"
    kills = []
    for i in range(20):
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
        during_save = i % 3 == 0
        proc = _launch(work)
        before = _steps_on_disk(work)
        t0 = time.time()
        while proc.poll() is None and time.time() - t0 < 300:
            if during_save and _saving(work):
                break
            if not during_save and _steps_on_disk(work) - before:
                time.sleep(rng.uniform(0.0, 0.3))
                break
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=300)
        kills.append((sig.name, during_save, proc.returncode, sorted(_steps_on_disk(work))))
        assert proc.returncode in (0, -signal.SIGKILL, -signal.SIGTERM), out
    final = _launch(work)
    out, _ = final.communicate(timeout=900)
    assert final.returncode == 0, out
    (s1, a), (s2, b) = _final_params(tmp_path / "straight"), _final_params(work)
    assert s1 == s2 == 80, kills
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert _rows(work) == _rows(tmp_path / "straight"), kills
