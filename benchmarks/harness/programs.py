"""Compiled JAX programs as timed candidates, and how two programs differ (jaxpr, HLO)."""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class JaxProgram:
    """A jitted, lowered and compiled function with its arguments bound: a timed candidate.

    A plain program computes ``fn(*args)`` at every call. A step program
    (``carries_state``) computes ``fn(state, *rest) -> (state, out)`` with the state
    donated: every call feeds the new state to the next one, as a training loop does.

    Attributes:
      fn: the function that was compiled.
      args: its arguments (for a step, the current state first).
      compiled: the executable (``jax.stages.Compiled``).
      trace_s: seconds to trace and lower.
      compile_s: seconds of XLA's compilation.
      carries_state: whether ``fn`` is a step with a donated state (see above).
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    compiled: Any
    trace_s: float
    compile_s: float
    carries_state: bool = False

    def __call__(self) -> Any:
        """Runs once and waits for the result (for a step: its ``out``)."""
        import jax

        out = self.compiled(*self.args)
        if self.carries_state:
            state, out = out
            self.args = (state, *self.args[1:])
        return jax.block_until_ready(out)

    def result(self) -> Any:
        """The result of one call as numpy arrays (a pytree)."""
        import jax

        return jax.tree.map(np.asarray, self())

    @property
    def total_s(self) -> float:
        """Seconds to trace, lower and compile."""
        return self.trace_s + self.compile_s

    def hlo(self) -> str:
        """The optimized HLO of the executable."""
        return self.compiled.as_text() or ""

    def temp_bytes(self) -> int | None:
        """Bytes of the executable's temporaries (XLA's memory analysis; ``None``: unknown)."""
        memory = self.compiled.memory_analysis()
        return None if memory is None else int(memory.temp_size_in_bytes)


def compile_jax(
    fn: Callable[..., Any], args: Sequence[Any], carries_state: bool = False
) -> JaxProgram:
    """Jits, lowers and compiles ``fn`` for ``args``, timing the trace and the compile.

    Args:
      fn: a function of JAX arrays (with ``carries_state``, ``fn(state, *rest) ->
        (state, out)``; the state is donated).
      args: its arguments (device arrays or pytrees of them).
      carries_state: compile ``fn`` as a step program (see ``JaxProgram``).

    Returns:
      The program, ready to be timed.
    """
    import jax

    t0 = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=0 if carries_state else ()).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return JaxProgram(fn, tuple(args), compiled, t1 - t0, t2 - t1, carries_state)


def ynn_fusions(hlo_text: str) -> dict[str, int]:
    """Counts the YNNPACK fusions of an optimized XLA:CPU program by the JAX op they compute.

    Args:
      hlo_text: the program's optimized HLO (``compiled.as_text()``).

    Returns:
      ``{op: count}``, the op being the last part of the fusion's ``op_name`` metadata
      (``reduce_sum``, ``dot_general``, ...; ``?`` where a fusion has none).
    """
    counts: dict[str, int] = {}
    for line in hlo_text.splitlines():
        if '"__ynn_fusion"' not in line or " fusion(" not in line:
            continue
        name = re.search(r'op_name="([^"]*)"', line)
        op = name.group(1).rsplit("/", 1)[-1] if name else "?"
        counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items()))


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


def leaves(tree: Any) -> list[np.ndarray]:
    """The leaves of a pytree as numpy arrays."""
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
