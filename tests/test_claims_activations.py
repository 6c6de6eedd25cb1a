"""experiments.claims_activations: epochs to a training error from logged curves."""

from __future__ import annotations

import json
import math

import pytest

from experiments import claims_activations as ca


def _run(path, batch, rows):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"config": {"batch_size": batch}}))
    lines = [json.dumps({"step": s, "split": "train", "accuracy": a}) for s, a in rows]
    lines.insert(1, json.dumps({"step": rows[0][0], "split": "test", "accuracy": 0.0}))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_epochs_to_thresholds_and_ratios(tmp_path):
    # Reference: error 0.6, 0.45, 0.35, 0.25 at steps 10..40 (batch 100, 1,000 examples:
    # 0.1 epoch a step). Other: slower, never at 25%; a resumed step logged twice.
    _run(tmp_path / "a", 100, [(10, 0.4), (20, 0.55), (30, 0.65), (40, 0.75)])
    _run(tmp_path / "b", 100, [(10, 0.3), (20, 0.52), (20, 0.9), (40, 0.61), (60, 0.72)])
    res = ca.analyse({"a": str(tmp_path / "a"), "b": str(tmp_path / "b")}, 1000)
    a, b = res["runs"]["a"], res["runs"]["b"]
    assert a["epochs_to"] == {"0.5": 2.0, "0.4": 3.0, "0.3": 4.0, "0.25": 4.0}
    assert b["epochs_to"]["0.5"] == 2.0 and b["epochs_to"]["0.4"] == 4.0
    assert b["epochs_to"]["0.3"] == 6.0 and math.isnan(b["epochs_to"]["0.25"])
    assert b["curve"]["error"][1] == pytest.approx(0.48)  # the repeated step 20 is skipped
    assert b["ratio"]["0.4"] == pytest.approx(4 / 3) and b["ratio"]["0.3"] == 1.5
    assert b["ratio"]["0.25"] == {"at_least": 6.0 / 4.0}
    text = ca.table(res)
    assert "not reached after 6.00 (ratio >= 1.50)" in text and "6.00 (ratio 1.50)" in text
    ca.plot(res, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_run_without_training_rows_is_named(tmp_path):
    _run(tmp_path / "a", 100, [(10, 0.4)])
    (tmp_path / "a" / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="has no logged training accuracy"):
        ca.train_curve(str(tmp_path / "a"))
