"""``config.eval_steps``: evaluations during training read N evenly spaced test batches;
the final one reads the whole split; a rerun may change it."""

import json
import types

import numpy as np
import pytest
from ml_collections import ConfigDict

from cnn_jax.data import BatchIterator
from cnn_jax.train import evaluation, train_and_evaluate
from experiments.configs import cifar10_small_cnn


def _config(**overrides):
    c = cifar10_small_cnn.get_config("runlocal")  # synthetic: 32 test images
    c.eval_batch_size = 8
    c.eval_every_steps = 2
    c.num_train_steps = 6
    c.progress_bar = False
    c.update(overrides)
    return c


def _test_rows(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["count"]) for r in rows if r["split"] == "test"]


def test_intermediate_evaluations_read_a_subset_and_the_final_one_all(tmp_path):
    whole = train_and_evaluate(_config(), tmp_path / "whole")
    part = train_and_evaluate(_config(eval_steps=1), tmp_path / "part")
    assert _test_rows(tmp_path / "whole") == [(2, 32), (4, 32), (6, 32)]
    assert _test_rows(tmp_path / "part") == [(2, 8), (4, 8), (6, 32)]
    # The same trajectory: the final evaluations agree exactly.
    assert part["test_count"] == 32
    assert part["test_loss"] == whole["test_loss"]
    assert part["test_accuracy"] == whole["test_accuracy"]
    # Run again on its finished workdir with another eval_steps (more batches than the
    # split has): not a trajectory change, and the final evaluation is the whole split.
    again = train_and_evaluate(_config(eval_steps=99), tmp_path / "part")
    assert again["test_count"] == 32 and again["test_loss"] == whole["test_loss"]


@pytest.mark.parametrize("value", [0, -1, 1.5, "2"])
def test_bad_eval_steps_is_an_error_naming_it(value, tmp_path):
    c = ConfigDict(_config().to_dict())
    c.eval_steps = value
    with pytest.raises(ValueError, match=r"`config.eval_steps` \(="):
        train_and_evaluate(c, tmp_path)


@pytest.mark.parametrize(
    ("max_batches", "read"),
    [(None, [0, 1, 2, 3, 4, 5, 6]), (1, [0]), (2, [0, 6]), (3, [0, 3, 6]), (7, None), (99, None)],
)
def test_the_batches_read_are_evenly_spaced(max_batches, read):
    """Test splits are stored in order (e.g. by class): the subset spans all of it."""
    n, size = 52, 8  # 7 batches, the last one padded
    it = BatchIterator(
        {"image": np.arange(n, dtype=np.float32)[:, None], "label": np.zeros(n, np.int32)},
        size,
        rng_seed=0,
        training=False,
        num_epochs=1,
    )
    seen = []

    def p_eval(state, batch):
        seen.append(int(batch["image"][0, 0]) // size)
        count = float(np.sum(batch["mask"]))
        return {"loss": 0.0, "top1": 0.0, "top5": 0.0, "count": count}

    par = types.SimpleNamespace(batch=lambda b: b, host=lambda t: t)
    metrics = evaluation.evaluate(p_eval, None, it, "image", par, max_batches=max_batches)
    want = read if read is not None else list(range(7))
    assert seen == want
    assert metrics["count"] == sum(min(size, n - b * size) for b in want)


@pytest.mark.parametrize(("eval_steps", "counts"), [(None, [32, 32, 32]), (1, [8, 8])])
def test_reduce_on_plateau_sees_evaluations_of_one_kind(eval_steps, counts, tmp_path, monkeypatch):
    """With a subset during training, the final whole-split evaluation does not step the
    plateau (its value is not comparable with the subsets' best)."""
    from cnn_jax.train import loop

    seen = []
    real = loop.update_plateau

    def spy(state, value, options):
        seen.append(value)
        return real(state, value, options)

    monkeypatch.setattr(loop, "update_plateau", spy)
    c = _config(eval_steps=eval_steps)
    c.optim.reduce_on_plateau.metric = "test_loss"
    train_and_evaluate(c, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"]
    assert [r["count"] for r in test][: len(counts)] == counts
    assert seen == [r["loss"] for r in test][: len(counts)]
