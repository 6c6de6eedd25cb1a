"""Ensembles of real (tiny) training runs: bagging through the study runner, members from
workdirs, the command line, SAMME boosting with the training loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ml_collections import ConfigDict

from cnn_jax import ensemble
from cnn_jax.study import cells, load_study, run_study
from experiments import ensemble as ensemble_cli
from experiments.configs.study_common import shrink, small_cifar10


def test_bagging_runlocal_members_and_the_ensemble(tmp_path):
    study = load_study("experiments/configs/study_cifar10_bagging.py:runlocal")
    assert [c.name for c in cells(study)] == ["member=bag0__seed=0", "member=bag1__seed=1"]
    assert cells(study)[1].config.dataset_options.draw_seed == 1
    assert run_study(study, str(tmp_path))
    dirs = ensemble_cli.expand([str(tmp_path / "cells" / "*")])
    assert len(dirs) == 2
    members = [ensemble.load_member(d) for d in dirs]
    assert members[0].config.model_kwargs.widths == (4, 8)
    probs, labels = ensemble.stack_predictions(members)
    assert probs.shape == (2, 32, 10) and labels.shape == (32,)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
    # The member's last test accuracy in its log is the accuracy of these predictions.
    rows = [
        json.loads(x)
        for x in (tmp_path / "cells" / members[0].name / "metrics.jsonl").read_text().splitlines()
    ]
    logged = [r["accuracy"] for r in rows if r["split"] == "test"][-1]
    assert ensemble.accuracy(probs[0], labels) == pytest.approx(logged, abs=1e-6)
    res = ensemble.evaluate_ensemble(probs, labels, [m.name for m in members])
    text = ensemble_cli.table(res, "t")
    assert "| **majority vote** |" in text and "member member=bag0__seed=0" in text
    res["by_size"] = ensemble_cli.by_size(probs, labels)
    assert res["by_size"]["probability_average"][-1] == res["probability_average"]
    assert res["by_size"]["majority_vote"][0] == res["members"][members[0].name]
    ensemble_cli.plot(res, str(tmp_path / "e.png"), "t")
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    # Predictions are cached next to the checkpoints.
    assert list((tmp_path / "cells" / members[0].name).glob("predictions_synthetic_test_*.npz"))
    with pytest.raises(ValueError, match=r"config\.json"):
        ensemble.load_member(str(tmp_path))


def test_samme_boosting_through_the_loop(tmp_path):
    base = shrink(small_cifar10())
    base.num_train_steps = 4
    calls = []

    def train(config, workdir):
        from cnn_jax.train import train_and_evaluate

        calls.append(config.dataset_options.get("weights_file"))
        assert config.dataset_options.draw_seed == config.seed - base.seed  # round r: draw r
        return train_and_evaluate(config, workdir)

    out = ensemble.boost(base, str(tmp_path), rounds=2, train=train)
    if "stopped" in out:  # a member no better than chance on a tiny budget is a valid stop
        assert "chance" in out["stopped"] or "perfect" in out["stopped"]
    assert calls[0] is None and (len(calls) < 2 or calls[1].endswith(".npy"))
    first = json.loads((tmp_path / "round0" / "samme.json").read_text())
    if "alpha" in first:
        probs, labels = ensemble.member_predictions(
            ensemble.load_member(str(tmp_path / "round0")), "train"
        )
        wrong = np.argmax(probs, -1) != labels
        assert first["error"] == pytest.approx(wrong.mean())
        w = np.load(first["weights_file"])
        alpha, _, want = ensemble.samme_update(np.full(len(labels), 1 / len(labels)), ~wrong, 10)
        assert first["alpha"] == pytest.approx(alpha)
        np.testing.assert_allclose(w, want)
    # Rerun: finished rounds are not trained again.
    calls.clear()
    assert ensemble.boost(base, str(tmp_path), rounds=2, train=train) == out
    assert calls == []


@pytest.mark.slow
def test_boosted_report_has_sammes_vote_against_numpy(tmp_path):
    """The command's report of boosted members: SAMME's alpha-weighted vote against a numpy
    reference, by ensemble size too; the rounds' errors and alphas in the table."""
    from experiments.configs import cifar10_small_cnn

    base = cifar10_small_cnn.get_config("runlocal")
    assert base.dataset == "synthetic" and base.eval_every_steps == 2
    from cnn_jax.train import train_and_evaluate

    dirs = []
    for seed in (0, 1, 2):
        config = ConfigDict(base.to_dict())
        config.seed = seed
        dirs.append(str(tmp_path / f"round{seed}"))
        train_and_evaluate(config, dirs[-1])
    boosted = {"alphas": [0.5, 2.0, 1.0], "errors": [0.3, 0.2, 0.25]}
    res = ensemble_cli.report(dirs, str(tmp_path / "out"), "boosted", boosted=boosted)
    probs, labels = ensemble.stack_predictions([ensemble.load_member(d) for d in dirs])
    votes = probs.argmax(-1)
    for k in (1, 2, 3):
        scores = np.zeros((labels.size, 10))
        for m in range(k):
            scores[np.arange(labels.size), votes[m]] += boosted["alphas"][m]
        want = float(np.mean(scores.argmax(-1) == labels))
        assert res["by_size"]["samme"][k - 1] == pytest.approx(want)
    assert res["samme"] == res["by_size"]["samme"][-1]
    text = (tmp_path / "out" / "ensemble.md").read_text()
    assert "| **samme** |" in text and "| 1 | 20.00 | 2.0000 |" in text
    assert (tmp_path / "out" / "ensemble.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2 alphas for 3 members"):
        ensemble_cli.report(dirs, str(tmp_path / "out"), "t", boosted={"alphas": [1, 2]})
