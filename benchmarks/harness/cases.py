"""Op benchmark cases: our function against a reference JAX formulation and PyTorch.

A case (``Case``) gives the arrays in the JAX layout (channels-last), our function,
the reference function and optionally other JAX formulations and a PyTorch function,
with the conversions of the arrays to PyTorch's layout. ``run_cases`` measures the
forward pass and/or the forward and backward pass (``jax.vjp`` with a fixed
cotangent, returning the output and the gradients; ``torch.autograd.grad`` with the
same cotangent), checks that the outputs agree, compares our program with the
reference one (jaxpr, then optimized HLO) and prints one row per case and mode.

PyTorch runs under ``torch.no_grad()`` for forward passes, in the memory format
(contiguous or ``channels_last``) that was faster in a short pre-measurement of both
(the table says which).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.harness.programs import compare_programs, compile_jax, max_rel_error, with_vjp
from benchmarks.harness.programs import leaves as _leaves
from benchmarks.harness.report import (
    end_lines,
    environment_lines,
    markdown_table,
    optional_torch,
)
from benchmarks.harness.timing import Settings, best_of, format_ms, format_ratio, measure, ratio

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


def _torch_results_to_jax(case: Case, out: Any, grads: Sequence[Any]) -> list[np.ndarray]:
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    conv = case.convert or [ACTIVATION] * len(case.arrays)
    res = [case.out_convert[1](o.detach().numpy()) for o in outs]
    res += [conv[i][1](g.detach().numpy()) for i, g in enumerate(grads)]
    return res


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


def layout_cell(layout: str, layout_times: dict[str, float]) -> str:
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
            torch=f"{format_ms(t['torch'].median)} {layout_cell(layout, layout_times)}",
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
    tail = end_lines(t_start)
    print("\n".join(tail), flush=True)
    print("\n" + table + "\n", flush=True)
    print("\n".join(notes), flush=True)
    return "\n".join([f"### {title}", "", *env, *tail, "", table, "", *notes])
