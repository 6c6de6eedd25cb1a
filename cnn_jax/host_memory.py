"""Keeps freed host memory for reuse: glibc ``malloc`` settings for XLA:CPU training loops.

Every execution of a compiled XLA:CPU program allocates its temporary buffers (hundreds
of megabytes for a CNN training step) and frees them at the end. glibc serves blocks
that large with a fresh ``mmap`` and returns them with ``munmap``, so every step touches
its working memory for the first time again and the kernel maps and zeroes it one page
at a time. ``reuse_host_memory(strategy)`` makes freed memory stay in the process, to be
handed out again (page faults and step times measured with and without it:
docs/ENGINEERING.md, "CPU tuning").

Both strategies set two ``mallopt`` parameters:

* ``M_MMAP_MAX = 0``: no ``mmap`` for large blocks, which come from the heap;
* ``M_TRIM_THRESHOLD = -1``: free memory at the top of the heap is never returned
  (mallopt(3): -1 turns trimming off; any finite threshold, even the largest positive
  ``int``, lets ``free`` return a block above it, so temporaries past 2 GiB would be
  mapped afresh in every step).

They differ in how XLA's blocks reach a heap that can hold them. A thread's own malloc
arena (every thread but the main one gets one) cannot: its heaps are at most 64 MiB,
and glibc maps a larger block with ``mmap`` whatever ``M_MMAP_MAX`` says. Only the main
arena (the one of the process's first thread) grows without that limit.

* ``'calling_thread'`` (the default): turns off JAX's asynchronous dispatch on the CPU
  (``jax_cpu_enable_async_dispatch``), so that XLA:CPU allocates an execution's buffers
  in the thread that calls the program instead of in one of its worker threads. Called
  from the main thread (the usual training loop), they come from the main arena. The
  other threads (tf.data's, XLA's workers) keep their own arenas. The cost: the call of
  a jitted function on the CPU returns when its result is ready, so host-side work
  between steps (fetching the next batch, logging) no longer overlaps the step, which
  can cost a job of short steps more than the page faults did. Programs that span
  several devices are still dispatched asynchronously (JAX's rule). It must be applied
  before JAX starts its CPU backend (the first computation or ``jax.devices()``). Reuse
  is likely, not certain: a fragmented heap still grows now and then.
* ``'one_arena'``: ``M_ARENA_MAX = 1``, one arena for all threads created afterwards
  (threads that allocated before keep their own). Dispatch stays asynchronous, but
  every thread shares one lock, and reuse is partial: a run's buffers are freed
  asynchronously, sometimes after the next run has allocated its own, and the heap
  grows (and faults) again.

The cost of both: the process keeps its peak heap until it exits. The library never
calls this on import. ``python -m experiments.main --host_memory=...`` and the
benchmarks' ``--host-memory`` (for JAX and PyTorch alike) do, and a user at the top of a
script. ``CNN_JAX_REUSE_HOST_MEMORY=0`` turns it off everywhere. Linux with glibc only;
elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["OPT_OUT_ENV", "SETTINGS", "STRATEGIES", "has_glibc_malloc", "reuse_host_memory"]

#: Set to ``0`` to keep glibc's defaults.
OPT_OUT_ENV = "CNN_JAX_REUSE_HOST_MEMORY"
_KEEP = {"M_MMAP_MAX": (-4, 0), "M_TRIM_THRESHOLD": (-1, -1)}
#: Per strategy: ``mallopt`` parameter -> (its constant in glibc's ``malloc.h``, value).
SETTINGS: dict[str, dict[str, tuple[int, int]]] = {
    "calling_thread": dict(_KEEP),
    "one_arena": {"M_ARENA_MAX": (-8, 1), **_KEEP},
}
#: The strategies of ``reuse_host_memory``, the default first.
STRATEGIES = tuple(SETTINGS)


def has_glibc_malloc() -> bool:
    """Whether this process runs on Linux with glibc, the only place the settings apply."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def reuse_host_memory(
    environ: dict[str, str] | None = None, *, strategy: str = "calling_thread"
) -> bool:
    """Makes glibc ``malloc`` keep freed memory for reuse (see the module docstring).

    Args:
      environ: the environment to read ``CNN_JAX_REUSE_HOST_MEMORY`` from
        (``os.environ`` when ``None``).
      strategy: one of ``STRATEGIES``: ``'calling_thread'`` (XLA:CPU allocates in the
        thread that calls a program; needs JAX's CPU backend not started yet) or
        ``'one_arena'`` (all threads created afterwards share one malloc arena).

    Returns:
      ``True`` if the settings were applied; ``False`` when opted out, not on Linux with
      glibc, when ``mallopt`` refused one of them, or (``'calling_thread'``) when JAX's
      backends had already started; nothing is changed then.

    Raises:
      ValueError: if ``strategy`` is not one of ``STRATEGIES``.
    """
    if strategy not in SETTINGS:
        raise ValueError(f"`strategy` (={strategy!r}) must be one of {STRATEGIES}")
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return False
    if not has_glibc_malloc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    if strategy == "calling_thread":
        from cnn_jax.xla_defaults import _backends_initialized

        if _backends_initialized():  # its client was created with asynchronous dispatch
            return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = all(mallopt(param, value) == 1 for param, value in SETTINGS[strategy].values())
    if applied and strategy == "calling_thread":
        import jax

        jax.config.update("jax_cpu_enable_async_dispatch", False)
    return applied
