"""experiments.claims_bottleneck: the two inception nets' counts, timed programs, table."""

from __future__ import annotations

import pytest

from experiments import claims_bottleneck as cb


@pytest.mark.slow  # compiles a training step of an inception net (tens of seconds on 2 cores)
def test_counts_and_programs_of_the_reduced_net():
    counts, train_step, infer = cb.programs(True, batch=2)
    # docs/RESULTS.md's counts (tests/test_models_small_nets.py checks them by hand).
    assert counts["parameters"] == 61_434 and round(counts["macs"] / 1e6, 1) == 42.6
    train_step()
    infer()


def test_table_reports_both_models_and_the_ratios():
    m = {"parameters": 10, "macs": 2e6, "train_step_ms": 5.0, "infer_ms": 1.0}
    res = {
        "batch": 32,
        "models": {"with_1x1": m, "without_1x1": {**m, "parameters": 40, "train_step_ms": 15.0}},
        "parameter_ratio": 4.0,
        "mac_ratio": 1.0,
        "train_step_ratio": 3.0,
        "infer_ratio": 1.0,
        "load_average": {"start": [2.0, 0, 0], "end": [3.5, 0, 0]},
    }
    text = cb.table(res)
    assert "| without_1x1 | 40 | 2.0 M | 15.0 | 1.0 |" in text
    assert "| without / with | 4.00x | 1.00x | 3.00x | 1.00x |" in text
    assert "2.0 at the start, 3.5." in text
