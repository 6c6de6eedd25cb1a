"""Training: steps, the loop, checkpoints (kill and resume), NaN stop, pmap == jit,
device counts, multi-process, configs and their errors."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from cnn_jax.data import resolve_data_dir
from cnn_jax.models import get_model
from cnn_jax.train import (
    Checkpointer,
    TrainingDivergedError,
    create_train_state,
    eval_step,
    make_optimizer,
    train_and_evaluate,
    train_step,
    validate_config,
)
from experiments.configs import lenet5_mnist

ROOT = Path(__file__).resolve().parents[1]
needs_mnist = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


def _config(steps=12, **overrides):
    c = lenet5_mnist.get_config("runlocal")
    c.num_train_steps = steps
    c.progress_bar = False
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def _latest_params(workdir):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        step = ckpt.latest_step()
        tree = ckpt.restore()
    finally:
        ckpt.close()
    return step, jax.tree.map(np.asarray, tree)


# --- steps ------------------------------------------------------------------


def test_train_step_and_eval_step_on_synthetic_batch():
    model = get_model("cnn_mnist", dropout=0.0)
    tx, schedule = make_optimizer(ConfigDict(dict(name="adam", learning_rate=1e-3)), 10, 100)
    state = create_train_state(model, tx, jax.random.key(0), (1, 28, 28, 1))
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.integers(0, 255, (16, 28, 28, 1)), jnp.uint8),
        "label": jnp.asarray(rng.integers(0, 10, 16), jnp.int32),
    }
    step = jax.jit(lambda s, b: train_step(s, b, base_key=jax.random.key(1), schedule=schedule))
    losses = []
    for _ in range(15):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert int(state.step) == 15 and losses[-1] < 0.5 * losses[0]
    assert state.batch_stats["bn0_0"]["mean"].shape == (32,)
    out = eval_step(state, {**batch, "mask": jnp.arange(16) < 10})
    assert float(out["count"]) == 10
    assert 0 <= float(out["top1"]) <= float(out["top5"]) <= 10


def test_only_uint8_inputs_are_rescaled():
    """Pixels are uint8; token ids (int32) must reach an embedding unscaled."""
    from cnn_jax.train.steps import as_float_images

    pixels = jnp.asarray([0, 51, 255], jnp.uint8)
    np.testing.assert_allclose(as_float_images(pixels), [0.0, 0.2, 1.0], rtol=1e-6)
    assert as_float_images(pixels).dtype == jnp.float32
    tokens = jnp.asarray([0, 17776, 3], jnp.int32)
    assert as_float_images(tokens) is tokens
    floats = jnp.asarray([-0.4, 2.8])
    assert as_float_images(floats) is floats


# --- the loop --------------------------------------------------------------------------


@needs_mnist
def test_short_run_learns_and_logs(tmp_path):
    summary = train_and_evaluate(_config(steps=40, **{"optim.learning_rate": 0.01}), tmp_path)
    assert summary["steps"] == 40 and summary["parameters"] == 60_000
    assert summary["test_count"] == 10_000
    assert summary["test_accuracy"] > 0.5  # 40 steps of 32 images: far above chance
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert {"loss", "accuracy", "learning_rate", "examples_per_second"} <= set(train[0])
    assert [r["step"] for r in rows if r["split"] == "test"] == [20, 40]
    assert (tmp_path / "metrics.csv").read_text().startswith("step,split,name,value")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 40


@needs_mnist
def test_mixed_precision_run_keeps_float32_parameters(tmp_path):
    c = _config(
        steps=8,
        half_precision=True,
        model="lenet5_modern",
        **{
            "optim.name": "adamw",
            "optim.learning_rate": 1e-3,
            "optim.weight_decay": 1e-4,
            "optim.grad_clip_norm": 1.0,
            "optim.warmup_epochs": 4 / 1875,
        },
    )
    summary = train_and_evaluate(c, tmp_path)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(summary["state"].params))
    assert np.isfinite(summary["test_loss"])


@needs_mnist
def test_pmap_path_equals_jit_path(tmp_path):
    small = {"dropout": 0.0, "widths": (8, 16), "hidden": 32}
    kw = {
        "model": "cnn_mnist",
        "model_kwargs": ConfigDict(small),
        "pad_to": None,
        "optim.name": "adam",
        "optim.learning_rate": 1e-3,
    }
    a = train_and_evaluate(_config(steps=6, **kw), tmp_path / "jit")
    b = train_and_evaluate(_config(steps=6, parallel="pmap", **kw), tmp_path / "pmap")
    pa, pb = a["state"].params, b["state"].params
    # Adam divides by the gradients' scale, so rounding differences of tiny gradients
    # (different reduction orders) show up absolutely, not relatively.
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-4), pa, pb)
    sa, sb = a["state"].batch_stats, b["state"].batch_stats
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), sa, sb)
    assert abs(a["test_accuracy"] - b["test_accuracy"]) < 2e-3
    # Both resume from their step-6 checkpoints (pmap: replicated again from the host),
    # trained longer: a change of the cosine schedule's length, allowed explicitly.
    kw["allow_config_change"] = True
    a = train_and_evaluate(_config(steps=8, **kw), tmp_path / "jit")
    b = train_and_evaluate(_config(steps=8, parallel="pmap", **kw), tmp_path / "pmap")
    assert int(a["state"].step) == int(b["state"].step) == 8
    pa, pb = a["state"].params, b["state"].params
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-4), pa, pb)


@needs_mnist
def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # The learning rate jumps by 1e30 at step 10; checkpoints every 5 steps.
    c = _config(
        steps=30,
        checkpoint_every_steps=5,
        log_every_steps=1,
        model="lenet5_modern",
        **{"optim.schedule": "step", "optim.milestones": (10 / 1875,), "optim.decay_factor": 1e30},
    )
    with pytest.raises(
        TrainingDivergedError,
        match=r"at step 1[0-9] .*last good checkpoint "
        r"is step 10",
    ):
        train_and_evaluate(c, tmp_path)
    step, tree = _latest_params(tmp_path)
    assert step == 10
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree["params"]))


@needs_mnist
def test_a_blown_up_update_never_becomes_the_last_good_checkpoint(tmp_path):
    # Step 11 uses the 1e30 learning rate: its parameters are finite but huge, and the
    # loss they give at step 12 is not. Checkpoint 11 must not be written.
    c = _config(
        steps=30,
        checkpoint_every_steps=11,
        log_every_steps=1,
        model="lenet5_modern",
        **{"optim.schedule": "step", "optim.milestones": (10 / 1875,), "optim.decay_factor": 1e30},
    )
    with pytest.raises(TrainingDivergedError, match="no checkpoint was written"):
        train_and_evaluate(c, tmp_path)
    assert Checkpointer(tmp_path / "checkpoints").latest_step() is None


# --- configs and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,match",
    [
        (
            {"batch_size": 12},
            r"`config.batch_size` \(=12\) must be divisible by the number of "
            r"devices \(=8\)",
        ),
        ({"parallel": "pmapp"}, r"`config.parallel` \(='pmapp'\)"),
        ({"model": "lenet6"}, r"unknown model 'lenet6'"),
        ({"optim.name": "adagradd"}, r"`optim.name` \(='adagradd'\)"),
        ({"optim.schedule": "linear"}, r"`optim.schedule` \(='linear'\)"),
        ({"optim.learning_rate": -1.0}, r"`optim.learning_rate` \(=-1.0\) must be positive"),
        ({"num_train_steps": 0}, r"`config.num_train_steps` \(=0\) must be a positive int"),
        ({"num_epochs": 1}, r"set one of `config.num_epochs` \(=1\) and `config.num_train_steps`"),
        ({"eval_every_steps": -3}, r"`config.eval_every_steps` \(=-3\)"),
        (
            {"optim.schedule": "step", "optim.milestones": (0.001,), "optim.decay_factor": 1e50},
            r"schedule is not finite in float32 at step",
        ),
        ({"augment": (("flipp", {}),)}, r"unknown augmentation"),
        (
            {"augment": ("color_jitter",), "normalization": "standardize"},
            r"entry 'color_jitter' clips images to \[0, 1\], but `config.normalization` "
            r"\(='standardize'\)",
        ),
        (
            {"augment": (("noise", {"clip": (0, 1)}),), "normalization": "channel_mean"},
            r"entry 'noise' clips images",
        ),
    ],
)
def test_bad_configs_fail_at_start(overrides, match, tmp_path):
    with pytest.raises((ValueError, TypeError), match=match):
        train_and_evaluate(_config(**overrides), tmp_path)


def test_unknown_config_keys_are_rejected():
    c = _config()
    c.unlock()
    c.lerning_rate = 0.1
    with pytest.raises(ValueError, match=r"unknown keys \['lerning_rate'\]"):
        validate_config(c)
    c = _config()
    c.optim.unlock()
    c.optim.lr = 0.1
    with pytest.raises(ValueError, match=r"config.optim has unknown keys \['lr'\]"):
        validate_config(c)


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(Exception, match="mnist") as e:
        train_and_evaluate(_config(data_dir=str(tmp_path / "empty")), tmp_path / "run")
    assert "train-images-idx3-ubyte.gz" in str(e.value)


def test_config_variants():
    assert lenet5_mnist.get_config().model == "lenet5"
    assert lenet5_mnist.get_config("modern").model == "lenet5_modern"
    assert lenet5_mnist.get_config("modern,runlocal").num_train_steps == 20
    with pytest.raises(ValueError, match="unknown config variant"):
        lenet5_mnist.get_config("big")
    from experiments.configs import cnn_mnist

    for config in (
        cnn_mnist.get_config(),
        cnn_mnist.get_config("runlocal"),
        lenet5_mnist.get_config(),
        lenet5_mnist.get_config("modern"),
    ):
        validate_config(config)  # every shipped config passes its own checks
    assert cnn_mnist.get_config("runlocal").num_train_steps == 20


# --- subprocess runs: the launcher, kill/resume, SIGTERM, device counts -----------------


def _main(workdir, *flags, devices=8, wait=True, extra_env=None):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra_env or {})
    cmd = [
        sys.executable,
        "-m",
        "experiments.main",
        "--config=experiments/configs/lenet5_mnist.py:runlocal",
        f"--workdir={workdir}",
        "--config.progress_bar=False",
        *flags,
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def _wait_for_checkpoint(workdir, step, proc, timeout=300):
    target = Path(workdir) / "checkpoints" / str(step)
    t0 = time.time()
    while not target.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout, "no checkpoint appeared"
        time.sleep(0.05)


RUN = (
    "--config.num_train_steps=40",
    "--config.checkpoint_every_steps=8",
    "--config.log_every_steps=4",
)


@needs_mnist
def test_launcher_overrides_and_locked_config(tmp_path):
    code, out = _main(tmp_path / "bad", "--config.lerning_rate=1")
    assert code != 0 and "lerning_rate" in out
    code, out = _main(  # with the opt-in glibc setting of cnn_jax.host_memory
        tmp_path / "ok",
        "--config.num_train_steps=4",
        "--config.log_every_steps=2",
        "--host_memory=calling_thread",
    )
    assert code == 0, out
    assert "summary: model=lenet5" in out and "steps=4" in out


@needs_mnist
def test_killed_and_preempted_runs_resume_to_identical_parameters(tmp_path):
    """A run SIGKILLed and then SIGTERMed, restarted each time, ends bitwise equal."""
    code, out = _main(tmp_path / "straight", *RUN)
    assert code == 0, out
    work = tmp_path / "interrupted"
    proc = _main(work, *RUN, wait=False)
    _wait_for_checkpoint(work, 16, proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate()
    proc = _main(work, *RUN, wait=False)
    _wait_for_checkpoint(work, 24, proc)
    proc.send_signal(signal.SIGTERM)  # preemption: save and exit cleanly
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "SIGTERM: saved checkpoint" in out
    code, out = _main(work, *RUN)
    assert code == 0, out
    assert "resuming from step" in out
    s1, a = _latest_params(tmp_path / "straight")
    s2, b = _latest_params(work)
    assert s1 == s2 == 40
    jax.tree.map(np.testing.assert_array_equal, a, b)
    # the logs hold each step once
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 40


@needs_mnist
def test_one_device_equals_eight_devices(tmp_path):
    flags = ("--config.num_train_steps=10", "--config.log_every_steps=5")
    code, out = _main(tmp_path / "one", *flags, devices=1)
    assert code == 0, out
    code, out = _main(tmp_path / "eight", *flags, devices=8)
    assert code == 0, out
    _, a = _latest_params(tmp_path / "one")
    _, b = _latest_params(tmp_path / "eight")
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), a, b)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # 33-41 s on 2 cores; one process with 8 devices stays in the default suite
@needs_mnist
def test_two_processes_train_together_like_one(tmp_path):
    """Two processes joined by jax.distributed.initialize (CPU collectives on localhost)."""
    flags = ("--config.num_train_steps=10", "--config.log_every_steps=5")
    port = _free_port()
    procs = [
        _main(
            tmp_path / "multi",
            *flags,
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
            devices=4,
            wait=False,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    assert "on 8 cpu device(s)" in outs[0]
    code, out = _main(tmp_path / "single", *flags, devices=8)
    assert code == 0, out
    _, a = _latest_params(tmp_path / "multi")
    _, b = _latest_params(tmp_path / "single")
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), a, b)
