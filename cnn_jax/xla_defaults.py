"""Opt-in XLA:CPU flags for cnn_jax programs, applied by an explicit call.

``import cnn_jax`` changes nothing process-wide. Entry points that want cnn_jax's CPU
defaults call :func:`apply_xla_cpu_defaults` (also ``cnn_jax.apply_xla_cpu_defaults``)
before JAX creates its first backend; ``experiments/main.py``, the benchmarks, the
notebooks and the test suite do. XLA reads ``XLA_FLAGS`` once, when JAX creates its
first backend (the first computation or ``jax.devices()``), not at ``import jax``, so a
call after that point can have no effect and changes nothing.

The call appends the flags of ``DEFAULT_XLA_FLAGS`` to ``XLA_FLAGS`` if, and only if:

* no JAX backend exists yet (otherwise ``()`` is returned and a log line says why);
* the environment variable ``CNN_JAX_XLA_DEFAULTS`` is not ``0``/``false``/``off``/``no``;
* the installed jaxlib is one these flags are known to (``SUPPORTED_JAXLIB``): XLA aborts
  the process on a flag it does not know, so an untested jaxlib gets none;
* ``XLA_FLAGS`` does not already name the flag (the user's setting wins).

The flag:

* ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``: keeps
  convolutions with XLA:CPU's own (Eigen) kernels instead of YNNPACK, jaxlib 0.10's
  default. On the CPUs it was measured on, XLA's own convolutions and their gradients
  were the faster ones (``python -m benchmarks.studies.xla_flags_cpu``;
  docs/ENGINEERING.md, "CPU tuning"). GPU and TPU backends ignore it.

Flags are process-wide: they apply to every program XLA:CPU compiles afterwards in this
process, including ones that do not use cnn_jax. That is why a library import must not
set them, and why this is a function for entry points to call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

__all__ = [
    "APPLIED",
    "DEFAULT_XLA_FLAGS",
    "OPT_OUT_ENV",
    "SUPPORTED_JAXLIB",
    "apply",
    "apply_xla_cpu_defaults",
]

#: The flags ``apply_xla_cpu_defaults`` appends.
DEFAULT_XLA_FLAGS: tuple[str, ...] = (
    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
)
#: Set to ``0``, ``false``, ``off`` or ``no`` to keep ``XLA_FLAGS`` as it is.
OPT_OUT_ENV = "CNN_JAX_XLA_DEFAULTS"
#: ``[low, high)`` jaxlib versions (major, minor) the flags are known to.
SUPPORTED_JAXLIB = ((0, 10), (0, 11))

_log = logging.getLogger(__name__)

#: The flags ``apply_xla_cpu_defaults()`` appended to ``os.environ`` in this process
#: (empty until it is called).
APPLIED: tuple[str, ...] = ()


def _flag_name(flag: str) -> str:
    return flag.split("=", 1)[0].lstrip("-")


def _backends_initialized() -> bool:
    """Whether JAX has created a backend (no public API says so; ``False`` if unknown)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - other jax versions
        return False


def _jaxlib_version() -> tuple[int, ...]:
    import jaxlib.version

    return tuple(int(p) for p in jaxlib.version.__version__.split(".")[:2])


def apply_xla_cpu_defaults(environ: MutableMapping[str, str] | None = None) -> tuple[str, ...]:
    """Appends cnn_jax's default XLA:CPU flags to ``XLA_FLAGS`` where the rules allow.

    Call it at the top of a script, before the first JAX computation. Calling it again
    is harmless: flags already named in ``XLA_FLAGS`` are skipped.

    Args:
      environ: the environment to edit (``os.environ`` when ``None``).

    Returns:
      The flags appended (empty if none: opted out, an untested jaxlib, a backend that
      already exists, or flags the user set already).

    Example::

      import cnn_jax

      cnn_jax.apply_xla_cpu_defaults()  # before anything runs on JAX
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "").strip().lower() in ("0", "false", "off", "no"):
        return ()
    low, high = SUPPORTED_JAXLIB
    if not low <= _jaxlib_version() < high:
        return ()
    if _backends_initialized():
        _log.info(
            "cnn_jax: JAX backends already exist, so the XLA flags %s cannot take effect "
            "and are not applied; call apply_xla_cpu_defaults() before running JAX code",
            DEFAULT_XLA_FLAGS,
        )
        return ()
    current = env.get("XLA_FLAGS", "")
    named = {_flag_name(f) for f in current.split()}
    added = tuple(f for f in DEFAULT_XLA_FLAGS if _flag_name(f) not in named)
    if added:
        env["XLA_FLAGS"] = " ".join([current.strip(), *added]).strip()
        if environ is None:
            global APPLIED
            APPLIED = (*APPLIED, *added)
    return added


#: The name this function had when ``import cnn_jax`` called it (kept for callers).
apply = apply_xla_cpu_defaults
