r"""Training speed of the launcher against a baseline revision, interleaved in one run.

  python -m benchmarks.launcher_speed --baseline=ab8c085
  python -m benchmarks.launcher_speed --baseline=HEAD~3 --rounds=5 --steps=1000 \
      --config=experiments/configs/lenet5_mnist.py:runlocal

Checks out ``--baseline`` in a temporary ``git worktree`` and runs the same training
job, ``python -m experiments.main --config=CONFIG ...``, in both trees: the working tree
this command runs from ("new", uncommitted changes included; ``--new=REV`` checks out
that revision instead) and the baseline. Each
job runs in its own fresh process, from its own tree (its own ``cnn_jax``,
``experiments`` and config file), with the same interpreter, environment and data
directory. The jobs alternate within each round (new, baseline; the next round
baseline, new; ...), so that load from other processes hits both alike.

What is compared is the training loop's own time: the launcher's ``metrics.jsonl``
gives the examples per second of every logging window, measured from after the train
step's compilation and without the evaluations; the first window (the first steps
after compiling) is left out. A job's time per step is the median over its windows of
the window's time per step (a burst of load from other processes spoils one window, not
the job). The ratio is new/baseline of the median time per step (below 1: the
new tree trains faster), with the range of the per-round ratios. Process start-up,
compilation and evaluation are reported, not compared.

The config's ``num_train_steps``, ``log_every_steps``, ``eval_every_steps`` and
``batch_size`` are set on the command line (``--steps``, ``--log-every``,
``--batch-size``), so the config must have those keys (``experiments.configs.common``'s
``base_config`` has them).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import common

DEFAULT_CONFIG = "experiments/configs/lenet5_mnist.py:runlocal"


@dataclass
class Job:
    """One training job's measurements."""

    tree: str
    round: int
    step_s: float
    steps: int
    wall_s: float
    compile_s: float | None


def git(repo: Path, *args: str) -> str:
    """Runs ``git -C repo args`` and returns its stripped standard output."""
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def window_times(metrics_jsonl: Path, batch_size: int) -> list[tuple[int, float]]:
    """``(steps, seconds)`` of every logging window of a run, from its ``metrics.jsonl``.

    Args:
      metrics_jsonl: the launcher's metrics file.
      batch_size: the global batch size of the run.

    Returns:
      One entry per ``train`` row in step order: the steps since the previous row and
      their training time, ``steps * batch_size / examples_per_second``.

    Raises:
      ValueError: if the file has no ``train`` rows with ``examples_per_second``.
    """
    rows = []
    with open(metrics_jsonl) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row.get("split") == "train" and "examples_per_second" in row:
                    rows.append(row)
    if not rows:
        raise ValueError(f"`metrics_jsonl` (={str(metrics_jsonl)!r}) has no training windows")
    rows.sort(key=lambda r: r["step"])
    out, previous = [], 0
    for row in rows:
        steps = int(row["step"]) - previous
        previous = int(row["step"])
        out.append((steps, steps * batch_size / float(row["examples_per_second"])))
    return out


def compile_seconds(output: str) -> float | None:
    """``compile_seconds`` from the launcher's summary line, if it printed or logged one."""
    for line in output.splitlines():
        if "compile_seconds=" in line:
            value = line.split("compile_seconds=", 1)[1].split(",", 1)[0].strip()
            try:
                return float(value)
            except ValueError:
                return None
    return None


def run_job(
    tree: Path, name: str, round_: int, argv: Sequence[str], env: dict, batch_size: int
) -> Job:
    """Runs one training job from ``tree`` in a fresh process and measures it.

    Raises:
      SystemExit: if the job fails (its output's tail is in the message).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"launcher_speed_{name}_"))
    try:
        cmd = [sys.executable, "-m", "experiments.main", *argv, f"--workdir={workdir}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise SystemExit(f"{name} job failed ({shlex.join(cmd)}):\n{output[-3000:]}")
        windows = window_times(workdir / "metrics.jsonl", batch_size)
        timed = windows[1:] or windows  # the first window holds the first calls' costs
        step_s = statistics.median(t / n for n, t in timed)
        return Job(name, round_, step_s, sum(n for n, _ in timed), wall, compile_seconds(output))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def check_tree(tree: Path, env: dict) -> str:
    """Where ``cnn_jax`` is imported from when a job runs in ``tree`` (must be in it)."""
    code = "import cnn_jax, experiments.main; print(cnn_jax.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True
    )
    path = out.stdout.strip()
    if out.returncode != 0 or not Path(path).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"jobs in {tree} would not run its own cnn_jax: {path or out.stderr}")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--baseline", required=True, help="git revision to compare against")
    p.add_argument(
        "--new",
        default=None,
        help="git revision to measure, checked out like the baseline (default: this working "
        "tree as it is, uncommitted changes included)",
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    p.add_argument("--steps", type=int, default=600, help="training steps per job")
    p.add_argument("--log-every", type=int, default=100, help="steps per logging window")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (>= 3; default 4)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPUs the jobs may use (default: all this process may use)",
    )
    ns = p.parse_args(argv)
    if ns.rounds < 3:
        p.error(f"--rounds (={ns.rounds}) must be >= 3")
    if ns.steps < 2 * ns.log_every or ns.log_every < 1:
        p.error(f"--steps (={ns.steps}) must be >= 2 windows of --log-every ({ns.log_every})")
    if ns.batch_size < 1:
        p.error(f"--batch-size (={ns.batch_size}) must be positive")
    return ns


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the jobs of both trees, interleaved, and prints the table."""
    ns = parse_args(argv)
    if ns.threads is not None:
        common.set_threads(ns.threads, "unset")  # inherited by the jobs (affinity)
    repo = Path(git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel"))
    base_rev = git(repo, "rev-parse", "--verify", f"{ns.baseline}^{{commit}}")
    if ns.new is None:
        head_rev = git(repo, "rev-parse", "HEAD")
        dirty = bool(git(repo, "status", "--porcelain", "--untracked-files=no"))
    else:
        head_rev, dirty = git(repo, "rev-parse", "--verify", f"{ns.new}^{{commit}}"), False
    env = dict(os.environ)
    if "CNN_JAX_DATA_DIR" not in env:
        from cnn_jax.data.paths import resolve_data_dir

        env["CNN_JAX_DATA_DIR"] = str(resolve_data_dir()[0].resolve())
    job_argv = [
        f"--config={ns.config}",
        f"--config.num_train_steps={ns.steps}",
        f"--config.log_every_steps={ns.log_every}",
        f"--config.eval_every_steps={ns.steps}",
        f"--config.batch_size={ns.batch_size}",
    ]
    header = common.machine_lines()
    tmp = Path(tempfile.mkdtemp(prefix="launcher_speed_"))
    base = tmp / "baseline"
    new = repo if ns.new is None else tmp / "new"
    checkouts = [(base, base_rev)] + ([] if ns.new is None else [(new, head_rev)])
    t_start = time.perf_counter()
    jobs: list[Job] = []
    try:
        for path, rev in checkouts:
            git(repo, "worktree", "add", "--detach", str(path), rev)
        trees = {"new": new, "baseline": base}
        for tree in trees.values():
            check_tree(tree, {**env, "PYTHONPATH": str(tree)})
        for r in range(ns.rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for name in order:
                tree_env = {**env, "PYTHONPATH": str(trees[name])}
                job = run_job(trees[name], name, r, job_argv, tree_env, ns.batch_size)
                jobs.append(job)
                print(
                    f"  round {r + 1} {name}: {job.step_s * 1e3:.2f} ms/step over {job.steps} "
                    f"steps; process {job.wall_s:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for path, _ in checkouts:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(tmp, ignore_errors=True)
    report(ns, header, jobs, t_start, base_rev, head_rev, dirty, job_argv)


def report(
    ns: argparse.Namespace,
    header: list[str],
    jobs: list[Job],
    t_start: float,
    base_rev: str,
    head_rev: str,
    dirty: bool,
    job_argv: Sequence[str],
) -> None:
    """Prints the report: set-up, one row per tree, the ratio with its spread."""
    timings = {}
    for name in ("new", "baseline"):
        timings[name] = common.Timing(
            rounds=[[j.step_s] for j in sorted(jobs, key=lambda j: j.round) if j.tree == name]
        )
    ratio = common.ratio(timings["new"], timings["baseline"])
    print("### Launcher training speed: this tree against a baseline revision\n")
    print("\n".join(header))
    new = (
        f"the working tree at {head_rev[:9]}" + (" with uncommitted changes" if dirty else "")
        if ns.new is None
        else f"{ns.new} = {head_rev[:9]} (git worktree)"
    )
    print(f"- new: {new}; baseline: {ns.baseline} = {base_rev[:9]} (git worktree)")
    print(f"- job: `python -m experiments.main {' '.join(job_argv)} --workdir=<temp>`")
    print(
        f"- {ns.rounds} rounds, the trees alternating (new first in odd rounds); time per "
        "step from metrics.jsonl, first logging window left out, compilation and "
        "evaluation excluded"
    )
    print("\n".join(common.end_lines(t_start)) + "\n")
    rows = []
    for name in ("new", "baseline"):
        own = [j for j in jobs if j.tree == name]
        per = [j.step_s * 1e3 for j in own]
        compiles = [j.compile_s for j in own if j.compile_s is not None]
        rows.append(
            [
                name,
                f"{statistics.median(per):.2f} ({min(per):.2f}-{max(per):.2f})",
                f"{1e3 / statistics.median(per):.0f}",
                f"{statistics.median(compiles):.1f}" if compiles else "-",
                f"{statistics.median(j.wall_s for j in own):.1f}",
            ]
        )
    print(
        common.markdown_table(
            ["tree", "ms/step median (range)", "steps/s", "compile s (if logged)", "process s"],
            rows,
        )
    )
    print(
        f"\nnew/baseline time per step: {common.format_ratio(ratio)} "
        "(median; range of the per-round ratios; below 1: new is faster)"
    )


if __name__ == "__main__":
    main()
