"""``config.eval_steps``: evaluations during training read the first N test batches; the
final one reads the whole split; a rerun may change it."""

import json

import pytest
from ml_collections import ConfigDict

from cnn_jax.train import train_and_evaluate
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


def test_intermediate_evaluations_read_the_first_batches_and_the_final_one_all(tmp_path):
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
