"""Reduce-on-plateau: the logic against hand-computed sequences, the config checks, and
a real run whose scale drops and which resumes from a checkpoint to the same result."""

import json
import os

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from cnn_jax.train import Checkpointer, init_plateau, train_and_evaluate, update_plateau
from cnn_jax.train.plateau import PlateauOptions, plateau_options
from experiments.configs import lenet5_mnist


def _options(**kw):
    base = dict(
        metric="test_accuracy",
        mode="max",
        factor=0.1,
        patience=2,
        min_delta=0.0,
        cooldown=0,
        min_scale=0.0,
    )
    return PlateauOptions(**{**base, **kw})


def _run(values, options):
    state, out = init_plateau(), []
    for v in values:
        state = update_plateau(state, v, options)
        out.append((float(state["scale"]), int(state["bad"]), int(state["cooldown"])))
    return state, out


def test_scale_drops_by_factor_after_patience_evaluations_without_improvement():
    # min mode (a loss), patience 3: 0.9 is the best; three evaluations without a lower
    # value, and the scale drops on the third.
    _, out = _run([1.0, 0.9, 0.95, 0.92, 0.91, 0.93], _options(mode="min", patience=3))
    assert [s for s, _, _ in out] == [1.0, 1.0, 1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1)]
    assert [b for _, b, _ in out] == [0, 0, 1, 2, 0, 1]


def test_a_non_finite_value_is_no_improvement():
    state, out = _run([float("nan"), 0.5, float("inf"), 0.4], _options(mode="min", patience=2))
    assert [b for _, b, _ in out] == [1, 0, 1, 0] and float(state["best"]) == pytest.approx(0.4)
    assert int(state["seen"]) == 2


def test_min_delta_cooldown_and_min_scale_hand_computed():
    # max mode, patience 2, an improvement must exceed 0.01, one evaluation of cooldown
    # after each drop, the scale stops at 0.001.
    options = _options(min_delta=0.01, cooldown=1, min_scale=0.001)
    values = [0.50, 0.55, 0.555, 0.54, 0.545, 0.55, 0.53, 0.70, 0.69, 0.69, 0.6, 0.6, 0.6]
    state, out = _run(values, options)
    want_scale = [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001]
    want_bad = [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    want_cooldown = [0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    np.testing.assert_allclose([s for s, _, _ in out], want_scale, rtol=1e-6)
    assert [b for _, b, _ in out] == want_bad
    assert [c for _, _, c in out] == want_cooldown
    assert float(state["best"]) == pytest.approx(0.70)
    assert {k: v.dtype for k, v in state.items()} == {
        "scale": np.float32,
        "best": np.float32,
        "bad": np.int32,
        "cooldown": np.int32,
        "seen": np.int32,
    }
    assert int(state["seen"]) == len(values)


def test_options_from_the_config():
    assert plateau_options(ConfigDict({"reduce_on_plateau": {"metric": None}})) is None
    opts = plateau_options(ConfigDict({"reduce_on_plateau": {"metric": "test_loss"}}))
    assert opts.mode == "min" and opts.factor == 0.1 and opts.patience == 10  # the defaults
    opts = plateau_options(
        ConfigDict({"reduce_on_plateau": {"metric": "test_accuracy", "patience": 5}})
    )
    assert opts.mode == "max" and opts.patience == 5
    for block, match in [
        ({"metric": "val_acc"}, r"`optim.reduce_on_plateau.metric` \(='val_acc'\)"),
        ({"metric": "test_loss", "mode": "up"}, r"`optim.reduce_on_plateau.mode` \(='up'\)"),
        ({"metric": "test_loss", "factor": 1.5}, r"`optim.reduce_on_plateau.factor` \(=1.5\)"),
        ({"metric": "test_loss", "patience": 0}, r"`optim.reduce_on_plateau.patience` \(=0\)"),
        ({"metric": "test_loss", "cooldown": -1}, r"`optim.reduce_on_plateau.cooldown` \(=-1\)"),
        ({"metric": "test_loss", "min_delta": -1.0}, r"reduce_on_plateau.min_delta` \(=-1.0\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            plateau_options(ConfigDict({"reduce_on_plateau": block}))
    with pytest.raises(TypeError, match=r"`optim.reduce_on_plateau` \(=True\) must be a block"):
        plateau_options({"reduce_on_plateau": True})


def _config(steps, parallel="jit", **plateau):
    c = lenet5_mnist.get_config("runlocal")
    c.dataset = "synthetic"
    c.dataset_options = ConfigDict(
        {"image_size": 32, "channels": 1, "train_size": 256, "test_size": 64}
    )
    c.normalization = None
    c.pad_to = None
    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_train_steps = steps
    c.log_every_steps = 2
    c.eval_every_steps = 2
    c.checkpoint_every_steps = 2
    c.progress_bar = False
    c.optim.schedule = "constant"  # the run length does not change the learning rate
    c.optim.learning_rate = 0.01
    c.optim.reduce_on_plateau.update(plateau)
    c.parallel = parallel
    return c


# The first evaluation sets the best accuracy; nothing later beats it by 1.0, so with
# patience 1 every later evaluation halves the learning rate.
PLATEAU = {"metric": "test_accuracy", "patience": 1, "factor": 0.5, "min_delta": 1.0}


def _train_rows(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"]


def test_run_drops_the_learning_rate_and_resumes_identically(tmp_path):
    straight = train_and_evaluate(_config(8, **PLATEAU), tmp_path / "straight")
    # Evaluations at steps 2, 4, 6, 8: the scale is 1, 0.5, 0.25, 0.125 after them, and
    # each log window's learning rate is the scale set by the evaluation before it.
    assert float(straight["state"].plateau["scale"]) == 0.125
    lrs = [r["learning_rate"] for r in _train_rows(tmp_path / "straight")]
    np.testing.assert_allclose(lrs, [0.01, 0.01, 0.005, 0.0025], rtol=1e-6)
    # Stopped after step 4, resumed to 8: the same parameters and plateau state.
    first = train_and_evaluate(_config(4, **PLATEAU), tmp_path / "resumed")
    assert float(first["state"].plateau["scale"]) == 0.5
    resumed = train_and_evaluate(_config(8, **PLATEAU), tmp_path / "resumed")
    assert int(resumed["state"].step) == 8
    jax.tree.map(np.testing.assert_array_equal, straight["state"].params, resumed["state"].params)
    jax.tree.map(np.testing.assert_array_equal, straight["state"].plateau, resumed["state"].plateau)
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    lrs = [r["learning_rate"] for r in _train_rows(tmp_path / "resumed")]
    np.testing.assert_allclose(lrs, [0.01, 0.01, 0.005, 0.0025], rtol=1e-6)


def test_pmap_run_drops_the_learning_rate_too(tmp_path):
    summary = train_and_evaluate(_config(4, parallel="pmap", **PLATEAU), tmp_path)
    assert float(summary["state"].plateau["scale"]) == 0.5
    lrs = [r["learning_rate"] for r in _train_rows(tmp_path)]
    np.testing.assert_allclose(lrs, [0.01, 0.01], rtol=1e-6)


def test_a_checkpoint_without_plateau_state_resumes(tmp_path):
    """Checkpoints written before the state had a plateau entry still restore."""
    # Without reduce-on-plateau the learning rate stays, and the checkpoint holds the
    # (unused) plateau state at its start.
    train_and_evaluate(_config(2), tmp_path / "a")
    np.testing.assert_allclose([r["learning_rate"] for r in _train_rows(tmp_path / "a")], [0.01])
    ckpt = Checkpointer(os.path.join(tmp_path / "a", "checkpoints"))
    try:
        tree = ckpt.restore()
    finally:
        ckpt.close()
    assert float(tree["plateau"]["scale"]) == 1.0
    del tree["plateau"]
    old = Checkpointer(os.path.join(tmp_path / "b", "checkpoints"))
    try:
        old.save(2, tree)
    finally:
        old.close()
    summary = train_and_evaluate(_config(4, **PLATEAU), tmp_path / "b")
    assert summary["steps"] == 4
    assert float(summary["state"].plateau["scale"]) == 1.0  # one evaluation: the first best
