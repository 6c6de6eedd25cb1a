"""Timing harness shared by the op benchmarks: interleaved rounds, medians, ratios.

Rules every benchmark here follows, so that its numbers mean something on a noisy,
shared CPU:

* JAX programs are ``jax.jit``-ed, lowered and compiled before any timing; trace and
  compile time are reported on their own and never in a timing. Every timed call
  ends with ``jax.block_until_ready``.
* PyTorch runs with ``torch.set_num_threads(threads)``, under ``torch.no_grad()`` for
  forward passes, in the memory format (contiguous or ``channels_last``) that was
  faster in a short pre-measurement of both (the table says which), with
  ``OMP_WAIT_POLICY=PASSIVE`` unless told otherwise: on a loaded machine the spinning
  default made 2-thread PyTorch calls stall for 16-32 ms each.
* The candidates of one case are timed interleaved: ``rounds`` rounds of ``reps``
  samples of each; a sample is one call (or the mean of a few calls for ops faster than
  ``MIN_SAMPLE_S``). Within a round the order is either per sample (A, B, C, A, B, C,
  ...; ``--order sample``, the default of the op benchmarks) or per block (one untimed
  call, then the ``reps`` samples of A, then of B, ...; ``--order block``, the default
  of the training-step benchmarks: each program is timed in the steady state of a
  training loop, after a call of itself, not after another program that left the
  malloc heap and the caches in its own state). The time of a candidate is the median
  of all its samples, and a ratio is ``median(candidate) / median(reference)``,
  printed with the range of the per-round ratios (of the medians of one round each).
  Ops faster than ``PREWARM_BELOW_S`` get one untimed call before each sample, so
  that none is timed with the caches the previous candidate left cold.
  The reference is also timed a second time, as a separate candidate (the "A/A"
  column): its ratio to itself shows how noisy the measurement was.
* Each table is printed with the machine, versions, date, load average and command
  line, ready to paste into ``docs/RESULTS.md``.

A case (``Case``) gives the arrays in the JAX layout (channels-last), our function,
the reference function and optionally other JAX formulations and a PyTorch function,
with the conversions of the arrays to PyTorch's layout. ``run_cases`` measures the
forward pass and/or the forward and backward pass (``jax.vjp`` with a fixed
cotangent, returning the output and the gradients; ``torch.autograd.grad`` with the
same cotangent), checks that the outputs agree, compares our program with the
reference one (jaxpr, then optimized HLO) and prints one row per case and mode.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: A sample shorter than this is the mean of several calls (the timer's resolution and
#: the dispatch jitter are then small next to it).
MIN_SAMPLE_S = 2e-3
#: The most calls averaged in one sample.
MAX_INNER = 64
#: Candidates faster than this get one untimed call before each sample, so that none
#: pays for the caches that the previous candidate left cold.
PREWARM_BELOW_S = 20e-3
#: The orders of the samples within a round (``measure``).
ORDERS = ("sample", "block")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """How long to measure: ``rounds`` interleaved rounds of ``reps`` samples."""

    quick: bool
    threads: int
    rounds: int
    reps: int
    only: str | None = None
    verbose: bool = False
    omp_wait_policy: str = "PASSIVE"
    host_memory: str = "default"
    order: str = "sample"


#: The ``--host-memory`` choices (``apply_host_memory``): glibc's defaults, or a strategy of
#: ``cnn_jax.host_memory.reuse_host_memory`` (``reuse``: ``one_arena``, its name in
#: earlier runs).
HOST_MEMORY_CHOICES = ("default", "calling_thread", "one_arena", "reuse")


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    order: str = "sample",
    parents: Sequence[argparse.ArgumentParser] = (),
) -> Settings:
    """Parses the command line shared by every benchmark.

    Args:
      description: the benchmark's one-line description, for ``--help``.
      argv: the arguments (``sys.argv[1:]`` by default).
      order: the default of ``--order`` (one of ``ORDERS``, see ``measure``).
      parents: the benchmark's own parsers (``add_help=False``), already applied to the
        command line; listed here so that ``--help`` shows their options too.

    Returns:
      The settings; ``--quick`` means 3 rounds x 5 reps on small shapes, the full
      run 5 rounds x 5 reps unless ``--rounds``/``--reps`` say otherwise.
    """
    parser = argparse.ArgumentParser(description=description, parents=list(parents))
    parser.add_argument("--quick", action="store_true", help="few, small shapes (smoke test)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (>= 3)")
    parser.add_argument("--reps", type=int, default=None, help="samples per round (>= 5)")
    parser.add_argument("--only", default=None, help="run the cases whose name has this text")
    parser.add_argument("--verbose", action="store_true", help="print HLO differences")
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE", "unset"],
        help="OMP_WAIT_POLICY for PyTorch's OpenMP threads (default PASSIVE: on a loaded "
        "machine the spinning default stalls parallel regions for whole scheduler slices)",
    )
    parser.add_argument(
        "--host-memory",
        default="default",
        choices=HOST_MEMORY_CHOICES,
        help="default: glibc's malloc settings; calling_thread, one_arena: that strategy of "
        "cnn_jax.host_memory.reuse_host_memory() for this process, JAX and PyTorch alike "
        "(reuse: one_arena)",
    )
    parser.add_argument(
        "--order",
        default=order,
        choices=ORDERS,
        help=f"order within a round (default {order}): 'sample' interleaves the candidates "
        "sample by sample; 'block' times each candidate's samples one after the other, "
        "after one untimed call (steady state, as in a training loop)",
    )
    ns = parser.parse_args(argv)
    if ns.threads < 1:
        parser.error(f"--threads (={ns.threads}) must be positive")
    rounds = ns.rounds if ns.rounds is not None else (3 if ns.quick else 5)
    reps = ns.reps if ns.reps is not None else 5
    if rounds < 3 or reps < 5:
        parser.error(f"need at least 3 rounds of 5 reps, got --rounds {rounds} --reps {reps}")
    host_memory = apply_host_memory(ns.host_memory)
    return Settings(
        ns.quick,
        ns.threads,
        rounds,
        reps,
        ns.only,
        ns.verbose,
        ns.omp_wait_policy,
        host_memory,
        ns.order,
    )


def apply_host_memory(choice: str) -> str:
    """Applies a ``--host-memory`` choice to this process; call before JAX or PyTorch start.

    Args:
      choice: one of ``HOST_MEMORY_CHOICES``: ``'default'``, or the strategy of
        ``cnn_jax.host_memory.reuse_host_memory()`` to apply (``'reuse'``: ``'one_arena'``).

    Returns:
      What is in effect, for the report.
    """
    if choice == "default":
        return "default"
    from cnn_jax.host_memory import reuse_host_memory

    strategy = "one_arena" if choice == "reuse" else choice
    # Before JAX or PyTorch start their threads (each would get its own arena).
    applied = reuse_host_memory(strategy=strategy)
    return f"reuse, {strategy}" if applied else f"default ({strategy} not applied)"


def set_threads(threads: int, omp_wait_policy: str = "PASSIVE") -> int:
    """Limits this process to ``threads`` CPUs, for XLA and PyTorch alike.

    XLA:CPU sizes its thread pool from the CPUs the process may run on, so the
    affinity mask must be set before the JAX backend starts (before the first array
    is created); PyTorch gets ``torch.set_num_threads``. ``OMP_WAIT_POLICY`` must be
    set before ``torch`` is first imported (when its OpenMP runtime starts).

    Args:
      threads: the number of CPUs (capped at those available).
      omp_wait_policy: ``'PASSIVE'``, ``'ACTIVE'`` or ``'unset'`` (leave the environment
        alone); an ``OMP_WAIT_POLICY`` already in the environment wins.

    Returns:
      The number of CPUs used.
    """
    cpus = sorted(os.sched_getaffinity(0))
    use = cpus[: max(1, threads)]
    if len(use) < len(cpus):
        os.sched_setaffinity(0, use)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if omp_wait_policy != "unset":
        if "torch" in sys.modules:
            print("warning: torch was imported before OMP_WAIT_POLICY was set", file=sys.stderr)
        os.environ.setdefault("OMP_WAIT_POLICY", omp_wait_policy)
    torch = optional_torch()
    if torch is not None:
        torch.set_num_threads(len(use))
    return len(use)


def optional_torch() -> Any:
    """Returns the ``torch`` module, or ``None`` when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


# --------------------------------------------------------------------------- environment


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


def environment_lines(settings: Settings, used_threads: int) -> list[str]:
    """Markdown bullet lines describing the machine, versions, date and settings."""
    v = versions()
    torch = optional_torch()
    torch_threads = torch.get_num_threads() if torch is not None else "-"
    return [
        f"- command: `{command_line()}`",
        f"- date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, {used_threads} used "
        f"(affinity; XLA:CPU thread pool; torch threads {torch_threads}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}), "
        f"{platform.system()} {platform.release()}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- settings: {settings.rounds} interleaved rounds x {settings.reps} reps "
        f"(--order {settings.order}), "
        f"samples under {MIN_SAMPLE_S * 1e3:g} ms averaged over up to {MAX_INNER} calls"
        + (", --quick" if settings.quick else ""),
        f"- load average at start (1, 5, 15 min): {load_average()}",
        f"- host memory (malloc): {settings.host_memory} (--host-memory)",
    ]


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Samples of one candidate (seconds per call), grouped by round."""

    rounds: list[list[float]] = field(default_factory=list)
    inner: int = 1
    prewarm: bool = True

    @property
    def median(self) -> float:
        """The median over every sample of every round."""
        return statistics.median(s for r in self.rounds for s in r)

    def round_medians(self) -> list[float]:
        """The median of each round."""
        return [statistics.median(r) for r in self.rounds]


def measure(
    candidates: dict[str, Callable[[], Any]], rounds: int, reps: int, order: str = "sample"
) -> dict[str, Timing]:
    """Times callables in interleaved rounds of ``reps`` samples of each.

    Each callable must run the computation once and wait for it (``block_until_ready``).
    Every candidate is called twice first (warm-up); the second call sets how many
    calls one sample averages (enough for ``MIN_SAMPLE_S``). Then every round takes
    ``reps`` samples of each candidate, so that a burst of load from other processes
    hits all candidates alike:

    * ``order='sample'``: A, B, C, A, B, C, ...; candidates faster than
      ``PREWARM_BELOW_S`` get one untimed call before each sample (hot caches for all);
    * ``order='block'``: one untimed call of A, then its ``reps`` samples, then B's, ...:
      each sample follows a call of the same program. For training steps this is the
      steady state of a training loop: XLA:CPU allocates a step's temporaries in one
      block (hundreds of MB) that glibc maps afresh for each call, and a different
      program in between decides which memory that call finds.

    Args:
      candidates: name -> callable, timed in this order.
      rounds: the number of rounds.
      reps: samples per candidate per round.
      order: ``'sample'`` or ``'block'`` (``ORDERS``).

    Returns:
      name -> its ``Timing``.

    Raises:
      ValueError: for an unknown ``order``.
    """
    if order not in ORDERS:
        raise ValueError(f"`order` (={order!r}) must be one of {ORDERS}")
    out = {}
    for name, fn in candidates.items():
        fn()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        inner = min(MAX_INNER, max(1, math.ceil(MIN_SAMPLE_S / max(dt, 1e-7))))
        out[name] = Timing(inner=inner, prewarm=dt < PREWARM_BELOW_S)

    def sample(name: str) -> float:
        fn, inner = candidates[name], out[name].inner
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner

    for _ in range(rounds):
        for timing in out.values():
            timing.rounds.append([])
        if order == "block":
            for name, fn in candidates.items():
                fn()
                out[name].rounds[-1].extend(sample(name) for _ in range(reps))
            continue
        for _ in range(reps):
            for name, fn in candidates.items():
                if out[name].prewarm:
                    fn()
                out[name].rounds[-1].append(sample(name))
    return out


def ratio(a: Timing, b: Timing) -> tuple[float, float, float]:
    """``median(a) / median(b)`` and the smallest and largest per-round ratio."""
    per_round = [x / y for x, y in zip(a.round_medians(), b.round_medians(), strict=True)]
    return a.median / b.median, min(per_round), max(per_round)


def format_ratio(r: tuple[float, float, float]) -> str:
    """``'1.00 (0.97-1.03)'``: the ratio and the range of the per-round ratios."""
    return f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})"


def format_ms(seconds: float) -> str:
    """Milliseconds with three significant digits."""
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table with padded columns."""
    widths = [max([len(str(h)), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


# --------------------------------------------------------------------------- JAX programs


@dataclass
class JaxProgram:
    """A jitted, lowered and compiled function with its arguments bound."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    compiled: Any
    trace_s: float
    compile_s: float

    def __call__(self) -> Any:
        """Runs once and waits for the result."""
        import jax

        return jax.block_until_ready(self.compiled(*self.args))

    def result(self) -> Any:
        """The result as numpy arrays (a pytree)."""
        import jax

        return jax.tree.map(np.asarray, self.compiled(*self.args))


def compile_jax(fn: Callable[..., Any], args: Sequence[Any]) -> JaxProgram:
    """Jits, lowers and compiles ``fn`` for ``args``, timing the trace and the compile.

    Args:
      fn: a function of JAX arrays.
      args: its arguments (device arrays).

    Returns:
      The program, ready to be timed.
    """
    import jax

    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return JaxProgram(fn, tuple(args), compiled, t1 - t0, t2 - t1)


_METADATA = re.compile(r",?\s*metadata=\{[^{}]*\}")
_STACK_TABLES = re.compile(r"^(FileNames|FunctionNames|FileLocations|StackFrames)$")
_TABLE_ROW = re.compile(r"^\d+ ")
_NAME = re.compile(r"%?\b[A-Za-z_][\w\-]*(?:\.\d+)+\b|%[\w.\-]+")
_MODULE = re.compile(r"^HloModule \S+", re.MULTILINE)
#: Instructions that do the work; programs with the same ones differ only in cheap glue.
HEAVY_OPS = (
    "convolution(",
    "dot(",
    "reduce-window(",
    "select-and-scatter(",
    "scatter(",
    "gather(",
    "custom-call(",
    "reduce(",
    "sort(",
)


def normalized_hlo(program: JaxProgram) -> str:
    """The optimized HLO without metadata and source tables, names renumbered in order."""
    text = program.compiled.as_text()
    text = _METADATA.sub("", text)
    text = _MODULE.sub("HloModule m", text)
    lines = [
        line
        for line in text.splitlines()
        if not _STACK_TABLES.match(line) and not _TABLE_ROW.match(line)
    ]
    names: dict[str, str] = {}

    def rename(m: re.Match[str]) -> str:
        return names.setdefault(m.group(0), f"%v{len(names)}")

    return "\n".join(_NAME.sub(rename, line) for line in lines if line.strip())


def _heavy(lines: Sequence[str]) -> list[str]:
    """The work-doing instructions of an HLO listing, without their names."""
    out = []
    for line in lines:
        if any(op in line for op in HEAVY_OPS):
            out.append(_NAME.sub("%", line.split("=", 1)[-1]).strip())
    return sorted(out)


def compare_programs(ours: JaxProgram, ref: JaxProgram, verbose: bool = False) -> str:
    """Whether two programs are the same: ``'jaxpr ='``, ``'HLO ='`` or how they differ.

    The jaxprs are compared as printed (variables are named in order, so equal
    programs print equally); if they differ, the optimized HLO modules are compared
    without metadata and with instructions renamed in order; if those differ, the
    instructions that do the work (``HEAVY_OPS``: convolutions, dots, window
    reductions, gathers, scatters...) are compared as multisets.

    Args:
      ours: our program.
      ref: the reference program.
      verbose: print a unified diff of the HLO when it differs.

    Returns:
      A short description for the table.
    """
    import difflib

    import jax

    if str(jax.make_jaxpr(ours.fn)(*ours.args)) == str(jax.make_jaxpr(ref.fn)(*ref.args)):
        return "jaxpr ="
    a_lines, b_lines = normalized_hlo(ours).splitlines(), normalized_hlo(ref).splitlines()
    if a_lines == b_lines:
        return "HLO ="
    diff = list(difflib.unified_diff(b_lines, a_lines, "ref", "ours", lineterm="", n=1))
    if verbose:
        print("\n".join(diff), file=sys.stderr)
    changed = sum(1 for d in diff if d[:1] in "+-" and d[:3] not in ("+++", "---"))
    if _heavy(a_lines) == _heavy(b_lines):
        return f"HLO: same heavy ops, glue differs ({changed} lines)"
    return f"HLO differs ({changed} lines, heavy ops too)"


def with_vjp(fn: Callable[..., Any], n_diff: int) -> Callable[..., Any]:
    """``g(*args, ct) = (fn(*args), vjp(ct))``: forward and backward in one program.

    The gradients are taken with respect to the first ``n_diff`` arguments; the output
    is returned too, so that XLA cannot drop the forward pass.
    """
    import jax

    def g(*args: Any) -> Any:
        *inputs, ct = args
        diff, rest = inputs[:n_diff], inputs[n_diff:]
        out, pull = jax.vjp(lambda *d: fn(*d, *rest), *diff)
        return out, pull(ct)

    return g


# --------------------------------------------------------------------------- PyTorch


def to_memory_format(t: Any, fmt: str) -> Any:
    """``t`` contiguous, or ``channels_last``/``channels_last_3d`` for 4-D/5-D tensors."""
    torch = optional_torch()
    if fmt == "channels_last" and t.ndim == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if fmt == "channels_last" and t.ndim == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t.contiguous()


def torch_formats(arrays: Sequence[np.ndarray]) -> list[str]:
    """The memory formats worth trying: ``channels_last`` only if a 4-D/5-D input exists."""
    if any(a.ndim in (4, 5) for a in arrays):
        return ["contiguous", "channels_last"]
    return ["contiguous"]


def torch_callable(
    fn: Callable[..., Any],
    arrays: Sequence[np.ndarray],
    fmt: str,
    n_diff: int | None,
    ct: np.ndarray | None,
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """A PyTorch candidate: a timed callable and one that returns the results.

    Args:
      fn: a function of tensors (PyTorch layout).
      arrays: its arguments, numpy arrays already in PyTorch's layout.
      fmt: ``'contiguous'`` or ``'channels_last'``, applied to 4-D and 5-D arguments
        and to the cotangent.
      n_diff: ``None`` for the forward pass (under ``torch.no_grad()``), else the
        number of leading arguments to differentiate with respect to.
      ct: the cotangent (PyTorch layout), for the backward pass.

    Returns:
      ``(run, results)``: ``run()`` computes once; ``results()`` returns
      ``(output, grads)`` (``grads`` empty for the forward pass) as torch tensors.
    """
    torch = optional_torch()
    tensors = [to_memory_format(torch.from_numpy(np.ascontiguousarray(a)), fmt) for a in arrays]
    if n_diff is None:

        def run() -> Any:
            with torch.no_grad():
                return fn(*tensors), ()

        return run, run
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors[:n_diff]]
    rest = tensors[n_diff:]
    ct_t = to_memory_format(torch.from_numpy(np.ascontiguousarray(ct)), fmt)

    def run_grad() -> Any:
        out = fn(*leaves, *rest)
        grads = torch.autograd.grad(out, leaves, ct_t)
        return out, grads

    return run_grad, run_grad


# --------------------------------------------------------------------------- cases


def nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    """Channels-last ``(N, *spatial, C)`` to channels-first ``(N, C, *spatial)``."""
    return np.moveaxis(a, -1, 1)


def nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    """Channels-first ``(N, C, *spatial)`` to channels-last ``(N, *spatial, C)``."""
    return np.moveaxis(a, 1, -1)


def hwio_to_oihw(a: np.ndarray) -> np.ndarray:
    """A JAX kernel ``(*window, I, O)`` to PyTorch's ``(O, I, *window)``."""
    n = a.ndim - 2
    return np.transpose(a, (n + 1, n, *range(n)))


def oihw_to_hwio(a: np.ndarray) -> np.ndarray:
    """PyTorch's kernel ``(O, I, *window)`` to JAX's ``(*window, I, O)``."""
    n = a.ndim - 2
    return np.transpose(a, (*range(2, n + 2), 1, 0))


Convert = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]
#: The activation layout conversion: (to PyTorch, back).
ACTIVATION: Convert = (nhwc_to_nchw, nchw_to_nhwc)
#: The kernel layout conversion: (to PyTorch, back).
KERNEL: Convert = (hwio_to_oihw, oihw_to_hwio)


@dataclass
class Case:
    """One benchmark case.

    Attributes:
      name: the row's name (with the shape).
      ours: our function of the JAX arrays.
      ref: the reference JAX formulation (same arguments, same result).
      arrays: the inputs in the JAX layout.
      n_diff: how many leading inputs the backward pass differentiates (0: forward only).
      torch_fn: the PyTorch function of the converted inputs, or ``None``.
      convert: for each input, ``(to_torch, from_torch)`` layout conversions.
      out_convert: conversion of the output (and the cotangent) ``(to_torch, from_torch)``.
      others: more JAX formulations to time, name -> function.
      note: a footnote for the table.
      ref_name: what the reference is, when the table has a column for it.
    """

    name: str
    ours: Callable[..., Any]
    ref: Callable[..., Any]
    arrays: list[np.ndarray]
    n_diff: int = 1
    torch_fn: Callable[..., Any] | None = None
    convert: list[Convert] | None = None
    out_convert: Convert = ACTIVATION
    others: dict[str, Callable[..., Any]] = field(default_factory=dict)
    note: str = ""
    ref_name: str = ""


def _leaves(tree: Any) -> list[np.ndarray]:
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def max_rel_error(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """``max_i max|a_i - b_i| / max|b_i|`` over matching arrays (0 for equal arrays)."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x64.shape != y64.shape:
            return math.inf
        scale = max(float(np.max(np.abs(y64))) if y64.size else 0.0, 1e-30)
        err = float(np.max(np.abs(x64 - y64))) if x64.size else 0.0
        worst = max(worst, err / scale)
    return worst


def _torch_results_to_jax(case: Case, out: Any, grads: Sequence[Any]) -> list[np.ndarray]:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    conv = case.convert or [ACTIVATION] * len(case.arrays)
    res = [case.out_convert[1](o.detach().numpy()) for o in outs]
    res += [conv[i][1](g.detach().numpy()) for i, g in enumerate(grads)]
    return res


def sample_times(run: Callable[[], Any], calls: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``calls`` calls of ``run``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t0)
    return samples


def best_of(run: Callable[[], Any], calls: int = 2) -> float:
    """Seconds of the fastest of ``calls`` calls of ``run``, after one untimed call."""
    return min(sample_times(run, calls))


def _time_torch_layout(
    case: Case, n_diff: int | None, ct: np.ndarray | None
) -> tuple[str, dict[str, float], tuple[Callable[[], Any], Callable[[], Any]]]:
    """Times each memory format briefly (best of 2 calls after a warm-up), keeps the faster."""
    conv = case.convert or [ACTIVATION] * len(case.arrays)
    t_arrays = [c[0](a) for c, a in zip(conv, case.arrays, strict=True)]
    t_ct = case.out_convert[0](ct) if ct is not None else None
    best: tuple[float, str, Any] | None = None
    times = {}
    for fmt in torch_formats(t_arrays):
        run, res = torch_callable(case.torch_fn, t_arrays, fmt, n_diff, t_ct)
        times[fmt] = best_of(run)
        if best is None or times[fmt] < best[0]:
            best = (times[fmt], fmt, (run, res))
    assert best is not None
    return best[1], times, best[2]


def _layout_cell(layout: str, layout_times: dict[str, float]) -> str:
    """``'CL (C x1.4)'``: the layout used and how much slower the other one was."""
    short = {"channels_last": "CL", "contiguous": "C"}
    cell = short[layout]
    for other, t in layout_times.items():
        if other != layout:
            cell += f" ({short[other]} x{t / layout_times[layout]:.1f})"
    return cell


def run_case(case: Case, mode: str, settings: Settings) -> dict[str, str]:
    """Measures one case in one mode (``'fwd'`` or ``'fwd+bwd'``).

    The candidates, timed in this order in every round: ours, the reference, the
    other JAX formulations, PyTorch, and the reference again (a second compilation of
    the same program), whose ratio to the first shows the noise of the measurement.

    Args:
      case: the case.
      mode: ``'fwd'`` or ``'fwd+bwd'``.
      settings: the parsed command line.

    Returns:
      The row: column key -> cell text (see ``COLUMNS``).
    """
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    args = [jnp.asarray(a) for a in case.arrays]
    ct = None
    if mode == "fwd":
        ours_fn, ref_fn = case.ours, case.ref
        others = dict(case.others)
        n_diff = None
    else:
        out_shape = jax.eval_shape(case.ours, *args)
        ct = rng.standard_normal(out_shape.shape).astype(out_shape.dtype)
        args.append(jnp.asarray(ct))
        ours_fn, ref_fn = with_vjp(case.ours, case.n_diff), with_vjp(case.ref, case.n_diff)
        others = {k: with_vjp(f, case.n_diff) for k, f in case.others.items()}
        n_diff = case.n_diff
    ours = compile_jax(ours_fn, args)
    ref = compile_jax(ref_fn, args)
    ref_again = compile_jax(ref_fn, args)
    other_progs = {k: compile_jax(f, args) for k, f in others.items()}
    same = compare_programs(ours, ref, settings.verbose)
    ours_res = _leaves(ours.result())
    err_ref = max_rel_error(ours_res, _leaves(ref.result()))
    if err_ref > 1e-5:
        same += f" (rel diff {err_ref:.0e}!)"
    cands: dict[str, Callable[[], Any]] = {"ours": ours, "ref": ref, **other_progs}
    row = {"case": case.name, "mode": mode, "ref_name": case.ref_name or "-"}
    if case.torch_fn is not None:
        layout, layout_times, (t_run, t_res) = _time_torch_layout(case, n_diff, ct)
        cands["torch"] = t_run
        err_torch = max_rel_error(ours_res, _torch_results_to_jax(case, *t_res()))
    cands["ref again"] = ref_again
    t = measure(cands, settings.rounds, settings.reps, settings.order)
    other_cells = []
    for k, prog in other_progs.items():
        err = max_rel_error(ours_res, _leaves(prog.result()))
        other_cells.append(
            f"{k} {format_ms(t[k].median)} ms, ours/it {format_ratio(ratio(t['ours'], t[k]))}"
            + (f" (rel diff {err:.0e}!)" if err > 1e-4 else "")
        )
    row.update(
        ours=format_ms(t["ours"].median),
        ref=format_ms(t["ref"].median),
        ours_ref=format_ratio(ratio(t["ours"], t["ref"])),
        aa=format_ratio(ratio(t["ref again"], t["ref"])),
        program=same,
        compile=f"{ours.trace_s + ours.compile_s:.2f} / {ref.trace_s + ref.compile_s:.2f}",
        others="; ".join(other_cells) or "-",
        torch="-",
        ours_torch="-",
        err_torch="-",
    )
    if case.torch_fn is not None:
        row.update(
            torch=f"{format_ms(t['torch'].median)} {_layout_cell(layout, layout_times)}",
            ours_torch=format_ratio(ratio(t["ours"], t["torch"])),
            err_torch=f"{err_torch:.0e}",
        )
    return row


#: Table columns: key -> header (``{ref}`` is the reference's label).
COLUMNS = {
    "case": "case",
    "mode": "mode",
    "ref_name": "reference",
    "ours": "ours ms",
    "ref": "{ref} ms",
    "ours_ref": "ours/{ref}",
    "aa": "{ref}/{ref} (A/A)",
    "program": "ours vs {ref} program",
    "torch": "torch ms (layout)",
    "ours_torch": "ours/torch",
    "err_torch": "rel err vs torch",
    "compile": "trace+compile s ours / {ref}",
    "others": "other JAX formulations",
}


def main_cases(
    argv: Sequence[str] | None,
    doc: str,
    module: str,
    cases: Callable[[bool], Sequence[Case]],
    title: str,
    ref_label: str,
) -> None:
    """The ``main`` of an op benchmark: parses the command line and runs its cases.

    Args:
      argv: the command-line arguments (``sys.argv[1:]`` when ``None``).
      doc: the module docstring (its first line is the description).
      module: the module's name, for the error message without PyTorch.
      cases: ``quick -> cases`` of the module.
      title: the report's title.
      ref_label: the reference's name in the table.

    Raises:
      SystemExit: without PyTorch CPU.
    """
    settings = parse_args(doc.splitlines()[0], argv)
    used = set_threads(settings.threads, settings.omp_wait_policy)
    if optional_torch() is None:
        raise SystemExit(f"benchmarks.{module} needs PyTorch CPU: pip install -e '.[torch]'")
    run_cases(cases(settings.quick), settings, used, title, ref_label)


def run_cases(
    cases: Sequence[Case],
    settings: Settings,
    used_threads: int,
    title: str,
    ref_label: str,
    modes: Sequence[str] = ("fwd", "fwd+bwd"),
) -> str:
    """Runs every case in every mode, prints progress and returns the report (markdown).

    Args:
      cases: the cases (``n_diff == 0`` cases run forward only).
      settings: the parsed command line.
      used_threads: the CPUs in use (``set_threads``).
      title: the report's heading.
      ref_label: the reference's name in the table (``lax``, ``flax``...).
      modes: the modes to run.

    Returns:
      The report: environment lines, the table, the notes, the load average at the end.
    """
    env = environment_lines(settings, used_threads)
    print(f"### {title}\n", flush=True)
    print("\n".join(env), flush=True)
    chosen = [c for c in cases if not settings.only or settings.only in c.name]
    if not chosen:
        raise SystemExit(f"no case matches --only {settings.only!r}")
    rows = []
    t_start = time.perf_counter()
    for case in chosen:
        for mode in modes:
            if mode != "fwd" and case.n_diff == 0:
                continue
            t0 = time.perf_counter()
            row = run_case(case, mode, settings)
            rows.append(row)
            print(
                f"  {case.name} [{mode}]: ours/{ref_label} {row['ours_ref']}, A/A {row['aa']}, "
                f"ours/torch {row['ours_torch']}, {row['program']} "
                f"({time.perf_counter() - t0:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    keys = [k for k in COLUMNS if k != "ref_name" or any(c.ref_name for c in chosen)]
    headers = [COLUMNS[k].format(ref=ref_label) for k in keys]
    table = markdown_table(headers, [[r[k] for k in keys] for r in rows])
    notes = [f"- {c.name}: {c.note}" for c in chosen if c.note]
    tail = [
        f"- load average at end (1, 5, 15 min): {load_average()}",
        f"- wall time: {time.perf_counter() - t_start:.0f} s",
    ]
    print("\n".join(tail), flush=True)
    print("\n" + table + "\n", flush=True)
    print("\n".join(notes), flush=True)
    return "\n".join([f"### {title}", "", *env, *tail, "", table, "", *notes])
