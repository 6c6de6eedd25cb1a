"""The report around a table: machine, versions, date, load and command; markdown tables."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.harness.timing import MAX_INNER, MIN_SAMPLE_S, Settings


def optional_torch() -> Any:
    """Returns the ``torch`` module, or ``None`` when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def utc_now() -> str:
    """The date and time (UTC), for the report."""
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S}"


def cpu_model() -> str:
    """The CPU model named in ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def versions() -> dict[str, str]:
    """Versions of Python, jax, jaxlib, flax, torch and numpy."""
    import flax
    import jax
    import jaxlib

    torch = optional_torch()
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "torch": torch.__version__ if torch is not None else "not installed",
        "numpy": np.__version__,
    }


def command_line() -> str:
    """The command that ran this benchmark, as typed from the repository root."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return shlex.join(["python", "-m", spec.name, *sys.argv[1:]])
    return shlex.join(["python", *sys.argv])


def machine_lines(used_threads: int | None = None) -> list[str]:
    """Markdown bullets every report starts with: command, date, machine, versions, flags.

    Args:
      used_threads: the CPUs in use (``set_threads``); ``None`` for a run on an accelerator.

    Returns:
      The lines: the command as typed, the date (UTC), the CPU and the threads used,
      the versions, ``XLA_FLAGS`` and the load average at the start.
    """
    torch = optional_torch()
    machine = f"{cpu_model()}, {os.cpu_count()} cores"
    if used_threads is not None:
        torch_threads = torch.get_num_threads() if torch is not None else "-"
        machine += (
            f", {used_threads} used (affinity; XLA:CPU thread pool; torch threads "
            f"{torch_threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})"
        )
    return [
        f"- command: `{command_line()}`",
        f"- date (UTC): {utc_now()}",
        f"- machine: {machine}, {platform.system()} {platform.release()}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in versions().items()),
        f"- XLA_FLAGS: `{os.environ.get('XLA_FLAGS', '')}`",
        f"- load average at start (1, 5, 15 min): {load_average()}",
    ]


def environment_lines(settings: Settings, used_threads: int) -> list[str]:
    """``machine_lines`` and the measurement settings, as markdown bullets."""
    return [
        *machine_lines(used_threads),
        f"- settings: {settings.rounds} interleaved rounds x {settings.reps} reps "
        f"(--order {settings.order}), "
        f"samples under {MIN_SAMPLE_S * 1e3:g} ms averaged over up to {MAX_INNER} calls"
        + (", --quick" if settings.quick else ""),
        f"- cnn_jax XLA:CPU defaults: {settings.xla_defaults} (--xla-defaults)",
        f"- host memory (malloc): {settings.host_memory} (--host-memory)",
    ]


def end_lines(t_start: float) -> list[str]:
    """The report's closing bullets: load average at the end, wall time since ``t_start``.

    Args:
      t_start: ``time.perf_counter()`` at the start of the measurements.
    """
    return [
        f"- load average at end (1, 5, 15 min): {load_average()}",
        f"- wall time: {time.perf_counter() - t_start:.0f} s",
    ]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table with padded columns."""
    widths = [max([len(str(h)), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])
