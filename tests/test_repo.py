"""The repository's promises: README's commands and example, CI, docs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = _bash_blocks()[1].strip()
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    # The part after the venv set-up is run verbatim by CI.
    install_and_test = test_cmd.split(". .venv/bin/activate && ", 1)[1]
    assert install_and_test in ci


def test_readme_opens_with_the_main_job():
    main_cmd = _bash_blocks()[0]
    assert "experiments/configs/lenet5_mnist.py" in main_cmd and "pip install -e ." in main_cmd
    assert (ROOT / "experiments" / "configs" / "lenet5_mnist.py").exists()


def test_readme_python_example_runs():
    code = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["x_back"].shape == namespace["x"].shape
    assert namespace["up"].shape == namespace["x"].shape


def test_ruff_clean():
    """The one linter and formatter: `ruff check` and `ruff format --check` pass."""
    import shutil
    import subprocess

    import pytest

    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    for args in (["check"], ["format", "--check"]):
        out = subprocess.run([ruff, *args, "."], cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def test_results_sections_name_their_commands():
    results = (ROOT / "docs" / "RESULTS.md").read_text()
    for section in results.split("\n## ")[1:]:
        assert "command" in section.lower(), section.splitlines()[0]
        assert "2026-" in section, section.splitlines()[0]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_runs_and_is_stripped(path, tmp_path, monkeypatch):
    """Every code cell of the notebook runs; a committed notebook carries no outputs."""
    import json
    import os

    monkeypatch.chdir(tmp_path)
    nb = json.loads(path.read_text())
    namespace: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs"), f"{path.name}: outputs not stripped"
        source = "".join(cell["source"])
        exec(compile(source, f"{path.name}", "exec"), namespace)
    assert os.getcwd() == str(tmp_path)


def test_readme_tree_shows_every_package():
    tree = re.search(r"## What is here\n+```\n(.*?)```", README, re.S).group(1)
    packages = [p.parent.name for p in (ROOT / "cnn_jax").glob("*/__init__.py")]
    for name in [*packages, "experiments", "benchmarks", "notebooks", "docs", "tests"]:
        assert re.search(rf"^\s*{name}/", tree, re.M), f"README's tree lacks {name}/"


def test_readme_has_no_dated_measurements_and_says_how_to_run_slow_tests():
    assert not re.search(r"20\d\d-\d\d-\d\d", README)
    assert "python -m pytest -m slow" in README
    for section in ("Using a layer from another JAX project", "Using cnn_jax from flax.nnx"):
        assert f"## {section}" in README


def _headings(path):
    return [h.strip() for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)]


def test_docs_are_ordered_by_topic_and_cited_sections_exist():
    """No 'issue N' headings; every `docs/X.md, "Section"` cited in the code is a heading."""
    docs = {name: ROOT / "docs" / name for name in ("RESULTS.md", "ENGINEERING.md")}
    for path in docs.values():
        assert not [h for h in _headings(path) if re.search(r"issues? \d", h)], path.name
    assert "CPU tuning" in _headings(docs["ENGINEERING.md"])
    cited = re.compile(r"docs/(RESULTS|ENGINEERING)\.md`*[,;]?\s+(?:section\s+)?\(?\"([^\"]+)\"")
    stale = []
    sources = [ROOT / "README.md", *ROOT.glob("tests/*.py")]
    for package in ("cnn_jax", "experiments", "benchmarks"):
        sources += ROOT.glob(f"{package}/**/*.py")
    for path in sources:
        for doc, section in cited.findall(re.sub(r"\s*\n\s*(#:?)?\s*", " ", path.read_text())):
            if not any(section.lower() in h.lower() for h in _headings(docs[f"{doc}.md"])):
                stale.append(f"{path.relative_to(ROOT)}: docs/{doc}.md, {section!r}")
    assert not stale, stale


def test_faults_page_names_tests_that_exist():
    """Every test docs/FAULTS.md cites (``T::name``, ``tests/x.py::name``) is defined."""
    text = (ROOT / "docs" / "FAULTS.md").read_text()
    files = dict(re.findall(r"`([A-Z])` = `(tests/test_\w+\.py)`", text))
    assert set(files) >= {"T", "W", "D", "C", "O"}, files
    cited = [(files[k], name) for k, name in re.findall(r"\b([A-Z])::(test_\w+)", text)]
    cited += re.findall(r"(tests/test_\w+\.py)::(test_\w+)", text)
    assert len(cited) > 30
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M)
    ]
    assert not missing, missing


def test_importing_the_scripts_defines_no_flags():
    """Scripts define their absl flags when run, so any two can be imported together."""
    import subprocess
    import sys

    names = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib\n"
        "from absl import app, flags, logging\n"  # absl's own flags
        "before = set(flags.FLAGS)\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module('experiments.' + name)\n"
        "print(sorted(set(flags.FLAGS) - before))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
