"""The study runner: a tiny grid writes its table, plot and JSON, resumes after a kill."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnn_jax.study import Axis, Derived, Study, cells, load_study, run_study, write_report
from cnn_jax.study.report import collect
from cnn_jax.train import train_and_evaluate
from experiments.configs.cnn_mnist import get_config

REPO = Path(__file__).resolve().parents[1]


def tiny_base(steps: int = 6):
    c = get_config("runlocal")
    c.dataset = "synthetic"
    c.normalization = None
    c.augment = ()
    c.dataset_options.image_size = 8
    c.dataset_options.channels = 1
    c.dataset_options.train_size = 64
    c.dataset_options.test_size = 32
    c.model_kwargs.widths = (4, 8)
    c.model_kwargs.hidden = 16
    c.batch_size = 16
    c.eval_batch_size = 32
    c.num_train_steps = steps
    c.log_every_steps = 2
    c.eval_every_steps = 2
    c.checkpoint_every_steps = 2
    c.progress_bar = False
    c.optim.learning_rate = 0.01
    return c


def tiny_study() -> Study:
    return Study(
        name="tiny",
        base=tiny_base(),
        axes=(Axis("optim.learning_rate", (0.03, 0.003)),),
        seeds=(0, 1),
        derived=(Derived("steps to 85% train error", "error", 0.85),),
        description="A test grid.",
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny study run without interruption."""
    workdir = tmp_path_factory.mktemp("reference")
    assert run_study(tiny_study(), str(workdir))
    return workdir, write_report(tiny_study(), str(workdir))


def test_tiny_grid_writes_table_plot_and_json(reference):
    workdir, _res = reference
    assert [c.name for c in cells(tiny_study())] == [
        "optim.learning_rate=0.03__seed=0",
        "optim.learning_rate=0.03__seed=1",
        "optim.learning_rate=0.003__seed=0",
        "optim.learning_rate=0.003__seed=1",
    ]
    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["settings"][0]["labels"] == ["0.03"]
    assert [c["status"] for c in on_disk["cells"]] == ["done"] * 4
    # Mean and sample std over the two seeds, from the cells' own last test rows.
    for s, pair in zip(
        on_disk["settings"], (on_disk["cells"][:2], on_disk["cells"][2:]), strict=True
    ):
        accs = []
        for c in pair:
            rows = [
                json.loads(x)
                for x in (workdir / "cells" / c["name"] / "metrics.jsonl").read_text().splitlines()
            ]
            accs.append([r["accuracy"] for r in rows if r["split"] == "test"][-1])
        assert s["final"]["test_accuracy"]["mean"] == pytest.approx(np.mean(accs))
        assert s["final"]["test_accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
        # The derived column: the first logged train row with error <= 0.6, in epochs.
        for c in pair:
            rows = [
                json.loads(x)
                for x in (workdir / "cells" / c["name"] / "metrics.jsonl").read_text().splitlines()
            ]
            first = [r["step"] for r in rows if r["split"] == "train" and 1 - r["accuracy"] <= 0.85]
            got = c["derived"]["steps to 85% train error"]
            want = first[0] * 16 / 64 if first else math.nan
            assert got["epochs"] == pytest.approx(want, nan_ok=True)
    table = (workdir / "table.md").read_text()
    assert "| optim.learning_rate | runs | test acc. (%)" in table
    assert "| 0.03 | 2/2 | " in table and "| 0.003 | 2/2 | " in table
    assert " ± " in table


def test_interrupted_study_resumes_to_the_same_results(reference, tmp_path):
    """A kill inside cell three (between its checkpoints 2 and 4) and the rerun."""
    ref_dir, ref = reference
    shutil.copytree(ref_dir / "cells", tmp_path / "cells")
    names = [c.name for c in cells(tiny_study())]
    shutil.rmtree(tmp_path / "cells" / names[3])  # never started
    third = tmp_path / "cells" / names[2]
    (third / "cell.json").unlink()  # not over: it dies after its step-3 log row
    for step in ("4", "6"):
        shutil.rmtree(third / "checkpoints" / step)
    rows = (third / "metrics.jsonl").read_text().splitlines()
    (third / "metrics.jsonl").write_text("\n".join(rows[:-2]) + '\n{"step": 5, "spl')  # torn
    calls = []

    def train(config, workdir):
        calls.append(os.path.basename(workdir))
        return train_and_evaluate(config, workdir)

    assert run_study(tiny_study(), str(tmp_path), train=train)
    assert calls == names[2:]
    res = write_report(tiny_study(), str(tmp_path))
    for a, b in zip(ref["cells"], res["cells"], strict=True):
        assert a["status"] == b["status"] == "done"
        assert a["final"] == pytest.approx(b["final"], rel=1e-5)
        for name, d in a["derived"].items():
            assert d == pytest.approx(b["derived"][name], nan_ok=True)
        for split in ("train", "test"):
            assert [r["step"] for r in a["curves"][split]] == [
                r["step"] for r in b["curves"][split]
            ]
            np.testing.assert_allclose(
                [r["loss"] for r in a["curves"][split]],
                [r["loss"] for r in b["curves"][split]],
                rtol=1e-5,
            )


def test_a_raise_between_cells_leaves_them_to_the_rerun(tmp_path):
    study = Study(name="one", base=tiny_base(steps=2), axes=(Axis("optim.momentum", (0.5,)),))
    calls = []

    def dies(config, workdir):
        calls.append(workdir)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(study, str(tmp_path), train=dies)
    assert len(calls) == 1 and not (Path(calls[0]) / "cell.json").exists()


def test_unknown_setting_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"unknown study setting 'optim\.lerning_rate'"):
        Study(name="x", base=tiny_base(), axes=(Axis("optim.lerning_rate", (0.1,)),))
    with pytest.raises(ValueError, match=r"unknown study setting 'normalisation'"):
        Study(name="x", base=tiny_base(), axes=(Axis("b", ({"normalisation": "zca"},)),))
    # The free-form blocks take new keys.
    Study(name="x", base=tiny_base(), axes=(Axis("model_kwargs.dropout", (0.0, 0.5)),))
    with pytest.raises(ValueError, match="one or two settings"):
        Study(name="x", base=tiny_base(), axes=())
    with pytest.raises(ValueError, match="repeated labels"):
        Axis("seed", (1, 1))
    with pytest.raises(ValueError, match="seeds"):
        Study(name="x", base=tiny_base(), axes=(Axis("optim.momentum", (0.5,)),), seeds=(0, 0))
    with pytest.raises(ValueError, match=r"'seed'.*Study\.seeds"):
        Study(name="x", base=tiny_base(), axes=(Axis("seed", (1, 2)),), seeds=(0, 1))
    # With one study seed, an axis may vary the seed with other settings (bagging).
    bag = Axis("m", ({"seed": 5, "optim.momentum": 0.5}, {"seed": 6}), labels=("a", "b"))
    got = cells(Study(name="x", base=tiny_base(), axes=(bag,)))
    assert [(c.seed, c.config.seed, c.name) for c in got] == [
        (5, 5, "m=a__seed=5"),
        (6, 6, "m=b__seed=6"),
    ]


def test_two_axes_and_a_diverged_cell(tmp_path):
    study = Study(
        name="two",
        base=tiny_base(steps=2),
        axes=(
            Axis("optim.learning_rate", (1e30,), labels=("huge",)),
            Axis("model_kwargs.hidden", (8,)),
        ),
    )
    assert run_study(study, str(tmp_path))
    res = write_report(study, str(tmp_path))
    status = {tuple(c["labels"]): c["status"] for c in res["cells"]}
    assert status == {("huge", "8"): "diverged"}
    assert "| huge | 8 | 0/1 (1 diverged) | - |" in (tmp_path / "table.md").read_text()
    assert collect(study, str(tmp_path))["settings"][0]["diverged"] == 1
    assert (tmp_path / "curves.png").exists()


def test_load_study_errors(tmp_path):
    with pytest.raises(ValueError, match="no file"):
        load_study(str(tmp_path / "nope.py"))
    (tmp_path / "s.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="get_study"):
        load_study(str(tmp_path / "s.py"))


@pytest.mark.slow
def test_killed_process_resumes_mid_cell(reference, tmp_path):
    """SIGKILL of ``experiments.study`` inside a cell; the rerun finishes the same."""
    _, ref = reference
    study_file = tmp_path / "study_tiny.py"
    shutil.copy(__file__, tmp_path / "tiny_defs.py")
    study_file.write_text(
        f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nfrom tiny_defs import tiny_study\n\n\n"
        "def get_study(arg=None):\n    return tiny_study()\n"
    )
    workdir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "experiments.study",
        f"--study={study_file}",
        f"--workdir={workdir}",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = workdir / "cells" / "optim.learning_rate=0.03__seed=1" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpts.is_dir() and any(ckpts.iterdir())):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert subprocess.run(cmd, cwd=REPO, capture_output=True).returncode == 0
    res = json.loads((workdir / "results.json").read_text())
    for a, b in zip(ref["cells"], res["cells"], strict=True):
        assert a["final"] == pytest.approx(b["final"], rel=1e-5)


STUDY_FILES = sorted(p.name for p in (REPO / "experiments" / "configs").glob("study_*.py"))


@pytest.mark.parametrize("name", [n for n in STUDY_FILES if n != "study_common.py"])
def test_every_study_config_has_a_valid_runlocal_variant(name):
    """Each study's runlocal cells are valid training configs on synthetic data (the
    bagging study's are trained in test_ensemble_train)."""
    from cnn_jax.train.config import validate_config

    study = load_study(f"experiments/configs/{name}:runlocal")
    for cell in cells(study):
        validate_config(cell.config)
        assert cell.config.dataset.startswith("synthetic")
        assert cell.config.num_train_steps <= 20
    full = load_study(f"experiments/configs/{name}")
    for cell in cells(full):
        validate_config(cell.config)
