"""The results ledger (docs/results/ledger.json) and the tables generated from it."""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from benchmarks import reproduce

ROOT = Path(__file__).resolve().parents[1]


def test_ledger_entries_are_complete():
    entries = reproduce.load()
    assert {"lenet5_mnist", "cnn_mnist"} <= {e["name"] for e in entries}
    for e in entries:
        assert isinstance(e["value"], (int, float)) and e["tolerance"] > 0, e["name"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", e["date"]), e["name"]
        assert re.fullmatch(r"[0-9a-f]{7,}\+?", e["revision"]), e["name"]
        assert "{workdir}" in e["command"], e["name"]
        assert e["wall_seconds"] is None or e["wall_seconds"] > 0, e["name"]
        for h in e.get("history", []):
            assert {"value", "date", "revision", "hardware"} <= set(h), e["name"]


def test_docs_tables_agree_with_the_ledger():
    """RESULTS.md's and README's accuracy tables are the ledger's, as generated."""
    for rel, text in reproduce.expected_files(reproduce.load()).items():
        assert (ROOT / rel).read_text() == text, (
            f"{rel}: stale table; run python -m benchmarks.reproduce --write-table"
        )


def test_every_ledger_value_is_in_results_and_the_headlines_in_the_readme():
    results = (ROOT / "docs" / "RESULTS.md").read_text()
    readme = (ROOT / "README.md").read_text()
    begin, end = reproduce.BEGIN.format("accuracy"), reproduce.END.format("accuracy")
    table = readme.split(begin)[1].split(end)[0]
    entries = reproduce.load()
    headlines = [e for e in entries if e.get("readme")]
    assert "lenet5_mnist" in {e["name"] for e in headlines}  # the main job's result
    for e in entries:
        row = f"| {e['model']} | {e['data']} |"
        assert f"**{reproduce._fmt(e, e['value'])}**" in results, e["name"]
        assert (row in table) == bool(e.get("readme")), e["name"]
    assert f"The headline {len(headlines)} of the ledger's {len(entries)} results" in table


def test_ledger_rejects_a_readme_mark_that_is_not_a_bool(tmp_path):
    entries = reproduce.load()
    entries[0] = {**entries[0], "readme": "yes"}
    path = tmp_path / "ledger.json"
    reproduce.save(entries, path)
    with pytest.raises(ValueError, match="`readme` 'yes' not a bool"):
        reproduce.load(path)


def test_config_docstrings_quote_the_ledger():
    """A config whose run is in the ledger states the recorded value in its docstring."""
    for e in reproduce.load():
        config = ROOT / e.get("config", f"experiments/configs/{e['name']}.py")
        if config.exists():
            assert reproduce._fmt(e, e["value"]) in config.read_text(), config.name


def test_readme_states_no_accuracy_outside_the_table():
    """README's percentages of test error/accuracy are the generated table's only."""
    readme = (ROOT / "README.md").read_text()
    begin, end = reproduce.BEGIN.format("accuracy"), reproduce.END.format("accuracy")
    outside = readme.split(begin)[0] + readme.split(end)[1]
    assert not re.search(r"\d\.\d\d%", outside), re.findall(r".{40}\d\.\d\d%", outside)


def _fake_ledger(tmp_path, value, command):
    entry = {
        "name": "fake", "model": "m", "data": "d", "metric": "test_error", "decimals": 2,
        "value": value, "tolerance": 0.1, "also": {"test_loss": 0.5}, "paper": "-",
        "command": command, "budget": "cpu", "hardware": "h", "date": "2026-01-01 00:00",
        "revision": "abcdef0", "wall_seconds": 1,
    }  # fmt: skip
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"entries": [entry]}))
    return path


# A command that writes what a training run writes: a train row and two test rows.
_WRITER = (
    "python -c \"import json, sys; f = open(sys.argv[1] + '/metrics.jsonl', 'w'); "
    "[f.write(json.dumps(r) + '\\n') for r in ["
    "{'step': 1, 'split': 'train', 'loss': 9.0, 'accuracy': 0.1}, "
    "{'step': 2, 'split': 'test', 'loss': 0.7, 'accuracy': 0.5, 'top5_accuracy': 1.0}, "
    "{'step': 4, 'split': 'test', 'loss': 0.25, 'accuracy': 0.99, 'top5_accuracy': 1.0}]]\" "
    "{workdir}"
)


def test_final_test_row_and_measure(tmp_path):
    rows = [
        {"step": 4, "split": "test", "loss": 0.25, "accuracy": 0.9907, "top5_accuracy": 1.0},
        {"step": 2, "split": "test", "loss": 0.7, "accuracy": 0.5, "top5_accuracy": 1.0},
        {"step": 5, "split": "train", "loss": 9.0, "accuracy": 0.1},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert reproduce.final_test_row(tmp_path)["accuracy"] == 0.9907
    entry = {"metric": "test_error", "decimals": 2, "also": {"test_loss": 0}}
    assert reproduce.measure(entry, tmp_path) == {"test_error": 0.93, "test_loss": 0.25}
    (tmp_path / "metrics.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="no test metrics"):
        reproduce.final_test_row(tmp_path)


def test_rerun_reports_drift_and_exits_nonzero(tmp_path, capsys):
    ok = _fake_ledger(tmp_path, 1.0, _WRITER)  # the writer's run: 1.00% error
    assert reproduce.main(["--ledger", str(ok)]) == 0
    assert "| ok |" in capsys.readouterr().out
    drift = _fake_ledger(tmp_path, 2.0, _WRITER)
    assert reproduce.main(["--ledger", str(drift), "--only", "fake"]) == 1
    out = capsys.readouterr().out
    assert "DRIFT" in out and "| 2.00% | 1.00% |" in out
    failing = _fake_ledger(tmp_path, 1.0, f"{sys.executable} -c 'raise SystemExit(3)' {{workdir}}")
    assert reproduce.main(["--ledger", str(failing)]) == 1
    assert "FAILED (rc 3)" in capsys.readouterr().out


def test_update_and_from_workdir_record_new_values(tmp_path):
    path = _fake_ledger(tmp_path, 2.0, _WRITER)
    assert reproduce.main(["--ledger", str(path), "--update", "--hardware", "hw"]) == 1
    entry = reproduce.load(path)[0]
    assert (entry["value"], entry["also"], entry["hardware"]) == (1.0, {"test_loss": 0.25}, "hw")
    assert entry["history"][0]["value"] == 2.0  # the previous record is kept
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        json.dumps({"step": 9, "split": "test", "loss": 0.1, "accuracy": 0.995}) + "\n"
    )
    args = ["--ledger", str(path), "--from-workdir", f"fake={run}", "--wall-seconds", "42"]
    assert reproduce.main([*args, "--revision", "1234567", "--date", "2026-12-02 10:00"]) == 0
    entry = reproduce.load(path)[0]
    assert (entry["value"], entry["wall_seconds"], entry["revision"]) == (0.5, 42, "1234567")
    assert [h["value"] for h in entry["history"]] == [1.0, 2.0]


def test_bad_ledger_and_arguments_are_named(tmp_path):
    path = _fake_ledger(tmp_path, 1.0, _WRITER)
    with pytest.raises(ValueError, match="no ledger entries \\['nope'\\]"):
        reproduce.main(["--ledger", str(path), "--only", "nope"])
    doc = json.loads(path.read_text())
    doc["entries"][0]["metric"] = "speed"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="unknown `metric` 'speed'"):
        reproduce.load(path)


@pytest.mark.slow
def test_short_ledger_entries_reproduce():
    """Reruns every CPU entry recorded at under 10 minutes (2 cores) and checks its value.

    The runs get the environment of a plain shell, not the test suite's: without the
    suite's 8 virtual CPU devices and its random-bits scheme, which change the run.
    """
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = flags.strip()
    if env.get("JAX_THREEFRY_PARTITIONABLE") == "0":  # tests/conftest.py's default
        del env["JAX_THREEFRY_PARTITIONABLE"]
    assert reproduce.main(["--budget", "cpu", "--max-wall-seconds", "600"], env=env) == 0
