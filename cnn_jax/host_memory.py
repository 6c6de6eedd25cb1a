"""Keeps freed host memory for reuse: glibc ``malloc`` settings for XLA:CPU training loops.

Every execution of a compiled XLA:CPU program allocates its temporary buffers (one
block of hundreds of megabytes for a CNN training step) and frees them at the end. glibc
serves blocks that large with a fresh ``mmap`` and returns them with ``munmap``, so every
step touches its working memory for the first time again: the kernel maps and zeroes it
one 4 KiB page at a time. Measured on the 2-core development machine (docs/RESULTS.md,
"CPU training steps, second pass"): 74,000-92,000 page faults and 240-350 ms of system
time per ResNet-20 training step (batch 128), 155,000 faults per airbench94 step.

``reuse_host_memory()`` sets three ``mallopt`` parameters so that freed memory stays in
the process and is handed out again:

* ``M_ARENA_MAX = 1``: one heap for all threads (blocks of other arenas above 64 MiB
  are always ``mmap``-ed);
* ``M_MMAP_MAX = 0``: no ``mmap`` for large blocks, which come from the heap;
* ``M_TRIM_THRESHOLD = 2**31 - 1``: free memory at the top of the heap is not returned.

The cost: the process keeps its peak heap until it exits, and threads share one arena.
Under the profiler a ResNet-20 training step (batch 128) went from 1,144 to 922 ms with
it, the page faults from 91,843 to 28,550 per step (``python -m
benchmarks.profile_step_cpu --host-memory reuse|default``). It is not a free win: one
epoch of the default LeNet-5 job (batch 64, small buffers, tf.data threads sharing the
one arena) trained in 15.0-15.8 s with it against 11.2-11.7 s without, so the library
never calls it on import. ``experiments/main.py --reuse_host_memory`` and the benchmarks'
``--host-memory reuse`` (for JAX and PyTorch alike) call it, and a user at the top of a
script, before JAX starts (threads that allocated before keep their own arenas).
``CNN_JAX_REUSE_HOST_MEMORY=0`` turns it off everywhere. Linux with glibc only; elsewhere
it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["OPT_OUT_ENV", "SETTINGS", "reuse_host_memory"]

#: Set to ``0`` to keep glibc's defaults.
OPT_OUT_ENV = "CNN_JAX_REUSE_HOST_MEMORY"
#: ``mallopt`` parameter -> value (constants of glibc's ``malloc.h``).
SETTINGS = {
    "M_ARENA_MAX": (-8, 1),
    "M_MMAP_MAX": (-4, 0),
    "M_TRIM_THRESHOLD": (-1, 2**31 - 1),
}


def reuse_host_memory(environ: dict[str, str] | None = None) -> bool:
    """Makes glibc ``malloc`` keep freed memory for reuse (see the module docstring).

    Args:
      environ: the environment to read ``CNN_JAX_REUSE_HOST_MEMORY`` from
        (``os.environ`` when ``None``).

    Returns:
      ``True`` if the settings were applied; ``False`` when opted out, not on Linux with
      glibc, or when ``mallopt`` refused one of them.
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS.values())
