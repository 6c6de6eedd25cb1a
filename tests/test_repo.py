"""The repository's promises: README's commands and example, CI, docs."""

import re
from pathlib import Path

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


def test_results_sections_name_their_commands():
    results = (ROOT / "docs" / "RESULTS.md").read_text()
    for section in results.split("\n## ")[1:]:
        assert "command" in section.lower(), section.splitlines()[0]
        assert "2026-" in section, section.splitlines()[0]
