"""The harness every benchmark uses: set-up of the process, timing, reports, JAX programs.

Rules every benchmark here follows, so that its numbers mean something on a noisy,
shared CPU:

* The process is set up before JAX creates a backend, in one place (``setup_xla``,
  called by ``parse_args`` and by the tools with their own command line): cnn_jax's
  XLA:CPU defaults (``cnn_jax.xla_defaults``; ``--xla-defaults off`` leaves them out),
  extra ``--xla-flags``, then the threads (``set_threads``) and the host memory
  strategy (``--host-memory``).
* JAX programs are ``jax.jit``-ed, lowered and compiled before any timing; trace and
  compile time are reported on their own and never in a timing. Every timed call
  ends with ``jax.block_until_ready`` (``JaxProgram``).
* PyTorch runs with ``torch.set_num_threads(threads)``, in the faster of its memory
  formats, with ``OMP_WAIT_POLICY=PASSIVE`` unless told otherwise: on a loaded machine
  the spinning default made 2-thread PyTorch calls stall for whole scheduler slices.
* The candidates of one comparison are timed interleaved (``measure``): ``rounds``
  rounds of ``reps`` samples of each; a sample is one call (or the mean of a few calls
  for ops faster than ``MIN_SAMPLE_S``). Within a round the order is either per sample
  (A, B, C, A, B, C, ...; ``--order sample``, the default of the op benchmarks) or per
  block (one untimed call, then the ``reps`` samples of A, then of B, ...; ``--order
  block``, the default of the training-step benchmarks: each program is timed in the
  steady state of a training loop, after a call of itself). The time of a candidate is
  the median of all its samples, and a ratio is ``median(candidate) /
  median(reference)``, printed with the range of the per-round ratios.
  The op benchmarks also time the reference a second time (the "A/A" column): its
  ratio to itself shows how noisy the measurement was.
* Each table is printed with the machine, versions, date, ``XLA_FLAGS``, load average
  and command line (``machine_lines``, ``environment_lines``), ready to paste into
  ``docs/RESULTS.md``.

The parts live in ``benchmarks.harness`` (``timing``, ``report``, ``programs``,
``cases``); this module re-exports them, so that a tool needs ``from benchmarks import
common`` only.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from benchmarks.harness.cases import (
    ACTIVATION,
    COLUMNS,
    KERNEL,
    Case,
    Convert,
    hwio_to_oihw,
    layout_cell,
    nchw_to_nhwc,
    nhwc_to_nchw,
    oihw_to_hwio,
    run_case,
    run_cases,
    to_memory_format,
    torch_callable,
    torch_formats,
)
from benchmarks.harness.programs import (
    HEAVY_OPS,
    JaxProgram,
    compare_programs,
    compile_jax,
    leaves,
    max_rel_error,
    normalized_hlo,
    with_vjp,
    ynn_fusions,
)
from benchmarks.harness.report import (
    command_line,
    cpu_model,
    end_lines,
    environment_lines,
    load_average,
    machine_lines,
    markdown_table,
    optional_torch,
    utc_now,
    versions,
)
from benchmarks.harness.timing import (
    MAX_INNER,
    MIN_SAMPLE_S,
    ORDERS,
    PREWARM_BELOW_S,
    Settings,
    Timing,
    best_of,
    format_ms,
    format_ratio,
    measure,
    ratio,
    sample_times,
)

__all__ = [
    "ACTIVATION",
    "COLUMNS",
    "HEAVY_OPS",
    "HOST_MEMORY_CHOICES",
    "KERNEL",
    "MAX_INNER",
    "MIN_SAMPLE_S",
    "ORDERS",
    "PREWARM_BELOW_S",
    "Case",
    "Convert",
    "JaxProgram",
    "Settings",
    "Timing",
    "add_host_memory_argument",
    "add_setup_arguments",
    "apply_host_memory",
    "best_of",
    "command_line",
    "compare_programs",
    "compile_jax",
    "cpu_model",
    "end_lines",
    "environment_lines",
    "format_ms",
    "format_ratio",
    "hwio_to_oihw",
    "layout_cell",
    "leaves",
    "load_average",
    "machine_lines",
    "main_cases",
    "markdown_table",
    "max_rel_error",
    "measure",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
    "normalized_hlo",
    "oihw_to_hwio",
    "optional_torch",
    "parse_args",
    "ratio",
    "run_case",
    "run_cases",
    "sample_times",
    "set_threads",
    "setup_xla",
    "start",
    "to_memory_format",
    "torch_callable",
    "torch_formats",
    "utc_now",
    "versions",
    "with_vjp",
    "ynn_fusions",
]

#: The ``--host-memory`` choices (``apply_host_memory``): glibc's defaults, or a strategy of
#: ``cnn_jax.host_memory.reuse_host_memory`` (``reuse``: ``one_arena``, its name in
#: earlier runs).
HOST_MEMORY_CHOICES = ("default", "calling_thread", "one_arena", "reuse")
#: ``--xla-defaults`` choices.
XLA_DEFAULTS_CHOICES = ("on", "off")


# --------------------------------------------------------------------------- XLA set-up


def setup_xla(xla_defaults: str = "on", xla_flags: str = "") -> tuple[str, ...]:
    """Sets this process's XLA flags; call before JAX creates a backend.

    The one place where a benchmark sets XLA flags. ``xla_flags`` are appended to
    ``XLA_FLAGS`` first (so that they win over the defaults they name); then, with
    ``xla_defaults='on'``, ``cnn_jax.xla_defaults.apply()`` appends cnn_jax's XLA:CPU
    defaults (it skips flags already named, and does nothing where
    ``CNN_JAX_XLA_DEFAULTS=0``); with ``'off'``, ``CNN_JAX_XLA_DEFAULTS=0`` is set, for
    this process and the processes it starts.

    Args:
      xla_defaults: ``'on'`` or ``'off'``.
      xla_flags: more flags for ``XLA_FLAGS`` (space-separated).

    Returns:
      The default flags appended (empty if none).

    Raises:
      ValueError: for an unknown ``xla_defaults``.
    """
    if xla_defaults not in XLA_DEFAULTS_CHOICES:
        raise ValueError(
            f"`xla_defaults` (={xla_defaults!r}) must be one of {XLA_DEFAULTS_CHOICES}"
        )
    if xla_flags:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip()
    if xla_defaults == "off":
        os.environ["CNN_JAX_XLA_DEFAULTS"] = "0"
        return ()
    from cnn_jax import xla_defaults as defaults

    return tuple(defaults.apply() or ())


def add_host_memory_argument(
    parser: argparse.ArgumentParser, where: str = "for this process"
) -> None:
    """Adds ``--host-memory`` (also spelled ``--host_memory``) to a tool's parser.

    ``apply_host_memory`` applies the choice; the tool calls it before JAX starts.

    Args:
      parser: the tool's parser.
      where: where the strategy is applied, for ``--help``.
    """
    parser.add_argument(
        "--host-memory",
        "--host_memory",  # the spelling of experiments.main's flag
        default="default",
        choices=HOST_MEMORY_CHOICES,
        help="default: glibc's malloc settings; calling_thread, one_arena: that strategy of "
        f"cnn_jax.host_memory.reuse_host_memory() {where}, JAX and PyTorch alike "
        "(reuse: one_arena; a step's freed buffers reused, not mapped afresh)",
    )


def add_setup_arguments(parser: argparse.ArgumentParser, threads: bool = True) -> None:
    """Adds the process set-up options to a tool's own parser (``start`` applies them).

    Args:
      parser: the tool's parser.
      threads: also add ``--threads`` (CPU tools).
    """
    parser.add_argument(
        "--xla-defaults",
        choices=XLA_DEFAULTS_CHOICES,
        default="on",
        help="on (default): apply cnn_jax's XLA:CPU defaults (cnn_jax.xla_defaults); off: "
        "leave them out (CNN_JAX_XLA_DEFAULTS=0)",
    )
    parser.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS")
    if threads:
        parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")


def start(ns: argparse.Namespace, omp_wait_policy: str = "PASSIVE") -> int | None:
    """Sets up the process from ``add_setup_arguments``' options, before JAX starts.

    Args:
      ns: the parsed command line.
      omp_wait_policy: as in ``set_threads``.

    Returns:
      The CPUs in use, or ``None`` when the parser has no ``--threads`` (accelerators).

    Raises:
      SystemExit: for ``--threads`` below 1.
    """
    setup_xla(ns.xla_defaults, ns.xla_flags)
    if getattr(ns, "threads", None) is None:
        return None
    if ns.threads < 1:
        raise SystemExit(f"--threads (={ns.threads}) must be positive")
    return set_threads(ns.threads, omp_wait_policy)


# --------------------------------------------------------------------------- settings


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
    add_setup_arguments(parser)
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
    add_host_memory_argument(parser)
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
    setup_xla(ns.xla_defaults, ns.xla_flags)  # before anything imports cnn_jax or starts JAX
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
        ns.xla_defaults,
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
