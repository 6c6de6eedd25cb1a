"""The XLA flags cnn_jax sets by default, chosen by measurement, and how to opt out.

XLA reads its flags from the ``XLA_FLAGS`` environment variable once, when JAX creates
its first backend (the first computation or ``jax.devices()``), not at ``import jax``.
``import cnn_jax`` therefore appends the flags below to ``XLA_FLAGS`` if, and only if:

* no JAX backend exists yet (otherwise the flags could not take effect: nothing is
  changed, and ``APPLIED`` stays empty);
* the environment variable ``CNN_JAX_XLA_DEFAULTS`` is not ``0``/``false``/``off``;
* the installed jaxlib is one these flags were measured with (``SUPPORTED_JAXLIB``):
  XLA aborts the process on a flag it does not know, so an untested jaxlib gets none;
* ``XLA_FLAGS`` does not already name the flag (the user's setting wins).

The flags:

* ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``: XLA:CPU (jaxlib
  0.10) hands convolutions above a small size to YNNPACK by default. On the 2-core AMD
  EPYC development machine XLA's own (Eigen) convolution was faster in 23 of 24 layer
  shapes (ResNet-50 and CIFAR shapes, 1x1 to 7x7, strided, dilated, grouped): 1.08-4.25x
  forward, 1.49-6.31x forward + gradients; training steps were 1.14-1.63x faster
  (``python -m benchmarks.xla_flags_cpu``; docs/RESULTS.md, "XLA flags on the CPU").
  GPU and TPU backends ignore it.

Flags are process-wide: they apply to every program XLA:CPU compiles afterwards in this
process, including ones that do not use cnn_jax.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

__all__ = ["APPLIED", "DEFAULT_XLA_FLAGS", "OPT_OUT_ENV", "SUPPORTED_JAXLIB", "apply"]

#: The flags appended to ``XLA_FLAGS`` by default.
DEFAULT_XLA_FLAGS: tuple[str, ...] = (
    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
)
#: Set to ``0``, ``false`` or ``off`` to keep ``XLA_FLAGS`` as it is.
OPT_OUT_ENV = "CNN_JAX_XLA_DEFAULTS"
#: ``[low, high)`` jaxlib versions (major, minor) the flags were measured with.
SUPPORTED_JAXLIB = ((0, 10), (0, 11))

_log = logging.getLogger(__name__)


def _flag_name(flag: str) -> str:
    return flag.split("=", 1)[0].lstrip("-")


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - other jax versions
        return False


def _jaxlib_version() -> tuple[int, ...]:
    import jaxlib.version

    return tuple(int(p) for p in jaxlib.version.__version__.split(".")[:2])


def apply(environ: MutableMapping[str, str] | None = None) -> tuple[str, ...]:
    """Appends the default flags to ``environ['XLA_FLAGS']`` where the rules above allow.

    Called once by ``import cnn_jax``; calling it again is harmless (flags already
    named are skipped).

    Args:
      environ: the environment to edit (``os.environ`` when ``None``).

    Returns:
      The flags appended (empty if none).
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "").strip().lower() in ("0", "false", "off", "no"):
        return ()
    low, high = SUPPORTED_JAXLIB
    if not low <= _jaxlib_version() < high:
        return ()
    if _backends_initialized():
        _log.info(
            "cnn_jax: JAX backends already exist, so the default XLA flags %s are not "
            "applied; import cnn_jax before running JAX code, or set XLA_FLAGS yourself",
            DEFAULT_XLA_FLAGS,
        )
        return ()
    current = env.get("XLA_FLAGS", "")
    named = {_flag_name(f) for f in current.split()}
    added = tuple(f for f in DEFAULT_XLA_FLAGS if _flag_name(f) not in named)
    if added:
        env["XLA_FLAGS"] = " ".join([current.strip(), *added]).strip()
    return added


#: The flags ``import cnn_jax`` appended in this process.
APPLIED: tuple[str, ...] = apply()
