"""Interleaved timing: rounds of samples of every candidate, medians and ratios.

A candidate is a callable that runs its computation once and waits for it. ``measure``
times the candidates of one comparison in interleaved rounds, so that a burst of load
from other processes hits them alike; ``ratio`` compares two of them as the ratio of
their medians, with the range of the per-round ratios as the spread.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Settings:
    """How a benchmark measures: ``rounds`` interleaved rounds of ``reps`` samples, and more.

    Attributes:
      quick: small shapes, few rounds (a smoke test).
      threads: CPUs in use.
      rounds: interleaved rounds.
      reps: samples of each candidate per round.
      only: run only the cases whose name has this text.
      verbose: print HLO differences.
      omp_wait_policy: ``OMP_WAIT_POLICY`` for PyTorch's OpenMP threads.
      host_memory: the malloc strategy in effect (``--host-memory``).
      order: ``'sample'`` or ``'block'`` (``measure``).
      xla_defaults: ``'on'`` or ``'off'``: whether cnn_jax's XLA:CPU defaults were applied.
    """

    quick: bool
    threads: int
    rounds: int
    reps: int
    only: str | None = None
    verbose: bool = False
    omp_wait_policy: str = "PASSIVE"
    host_memory: str = "default"
    order: str = "sample"
    xla_defaults: str = "on"


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
