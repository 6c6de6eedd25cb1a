"""Smoke tests of the CPU benchmark helpers (no timing is asserted)."""

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
