"""Smoke tests of the CPU benchmark helpers (no timing is asserted)."""

import functools
import time

import pytest

from benchmarks import common, profile_step_cpu
from cnn_jax import host_memory


def test_host_memory_setting_is_parsed(monkeypatch):
    # The real call would change malloc for the rest of this test process: record it.
    calls = []
    monkeypatch.setattr(host_memory, "reuse_host_memory", lambda: calls.append(1) or True)
    assert common.parse_args("x", []).host_memory == "default"
    assert calls == []
    settings = common.parse_args("x", ["--host-memory", "reuse"])
    assert calls == [1]
    assert settings.host_memory in ("reuse", "default (reuse not applied)")
    assert any("host memory" in line for line in common.environment_lines(settings, 2))


def test_profile_step_prints_op_kinds(capsys, tmp_path):
    hlo = tmp_path / "step.hlo"
    profile_step_cpu.main(["--model", "lenet5", "--steps", "1", "--top", "5", "--hlo", str(hlo)])
    out = capsys.readouterr().out
    assert "page faults per step" in out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert 1 <= len(rows) <= 5
    assert "convolution" in hlo.read_text()


def test_measure_orders():
    """Per sample, the candidates alternate; per block, each candidate's samples follow
    one untimed call of itself. Two warm-up calls each, in both orders."""
    for order, expected_round in (("sample", ["a", "b"] * 3), ("block", ["a"] * 4 + ["b"] * 4)):
        calls: list[str] = []

        def candidate(name, calls=calls):
            # Slower than PREWARM_BELOW_S: no extra untimed call before each sample.
            calls.append(name)
            time.sleep(common.PREWARM_BELOW_S)

        timed = {k: functools.partial(candidate, k) for k in ("a", "b")}
        t = common.measure(timed, rounds=2, reps=3, order=order)
        assert calls[:4] == ["a", "a", "b", "b"]
        assert calls[4:] == expected_round * 2
        assert all(len(r) == 3 for v in t.values() for r in v.rounds)
    assert common.parse_args("x", []).order == "sample"
    assert common.parse_args("x", [], order="block").order == "block"
    assert common.parse_args("x", ["--order", "sample"], order="block").order == "sample"


def test_measure_rejects_an_unknown_order():
    with pytest.raises(ValueError, match="`order` \\(='x'\\)"):
        common.measure({"a": lambda: None}, rounds=1, reps=1, order="x")
