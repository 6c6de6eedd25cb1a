"""The switch for the fast paths: which custom derivatives and forward formulations are used.

Each fast path computes the same function as the plain ``lax`` program (values and
derivatives), by a formulation that XLA:CPU runs faster; each has a name in
``FAST_PATHS`` and lives with the op it speeds up:

* ``'conv'``, ``'grouped'``: dense and grouped kernel gradients as per-tap products
  (``cnn_jax.ops.conv_fast``);
* ``'depthwise'``: depthwise convolution as shifted, scaled copies of the input
  (``cnn_jax.ops.depthwise_fast``);
* ``'small_input'``: the forward pass of a convolution with few input channels as
  broadcast products (``cnn_jax.ops.small_input_fast``);
* ``'conv_transpose'``, ``'conv_transpose_tiles'``: the transposed convolution's kernel
  gradient as col2im, and one product where the kernel tiles the output
  (``cnn_jax.ops.conv_transpose_fast``);
* ``'max_pool'``: the max-pool tangent of non-overlapping windows as a fused loop
  (``cnn_jax.ops.pool_fast``);
* ``'batch_norm'``: training-mode batch normalization with a derivative of fewer
  reductions (``cnn_jax.ops.norm_fast``);
* ``'materialize'``, ``'unfused_conv'``: fusion boundaries around convolutions
  (``cnn_jax.ops.fusion``);
* ``'loop_conv'``: inside a :func:`loop_body` block only, the dense convolution's
  derivatives as canonical convolutions (the kernel gradient over the batch), which
  XLA:CPU keeps fast inside ``while`` loops (``cnn_jax.ops.loop_conv``; a
  ``custom_vjp``: reverse mode to any order, no plain forward mode).

The fast paths apply to floating-point (and complex) arrays only: integer convolutions
are ``lax``'s, exact sums in a wide integer type (``cnn_jax.ops.conv``). Every rule but
``'loop_conv'``'s is a ``custom_jvp`` (or plain differentiable code), so forward mode,
reverse mode and higher derivatives all work and give the same values as ``lax``
(``tests/test_fast_paths.py``).
Why each default was chosen: ``docs/ENGINEERING.md``, "CPU tuning".

Which fast paths are used is decided **at trace time**, when an op is called (under
``jax.jit``: when the function is traced, not when it runs):

1. inside ``with use_fast_paths(...)``: what the innermost such block says;
2. else the environment variable ``CNN_JAX_FAST_PATHS``: ``0``/``false``/``off``
   (none), ``1``/``true``/``on`` (all), ``auto`` or unset (the default below), or a
   comma-separated list of names from ``FAST_PATHS``;
3. else the default: ``CPU_DEFAULT`` when ``jax.default_backend()`` is ``'cpu'``
   (``CPU_DEFAULT_YNN`` when ``XLA_FLAGS`` leaves convolutions to YNNPACK,
   ``ynn_convolutions``), none on GPU/TPU (whose convolutions and their gradients are
   fast; the formulations here were measured on CPU only).

Ops called eagerly run a compiled core cached per geometry and per set of enabled fast
paths, so changing the switch takes effect at the next eager call. A function already
traced by ``jax.jit`` (or ``jax.make_jaxpr``) keeps the choice it was traced with: trace
a new function (a new ``lambda`` or ``jax.grad(...)``) or call ``jax.clear_caches()``.
The switch lives in a ``contextvars.ContextVar`` (each thread and task sees its own) and
is never set by the library itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np

__all__ = [
    "CPU_DEFAULT",
    "CPU_DEFAULT_YNN",
    "ENV_VAR",
    "FAST_PATHS",
    "enabled_fast_paths",
    "fast_path_enabled",
    "in_loop_body",
    "loop_body",
    "use_fast_paths",
    "ynn_convolutions",
]

#: The fast paths, by name.
FAST_PATHS = (
    "conv",
    "depthwise",
    "grouped",
    "conv_transpose",
    "max_pool",
    "materialize",
    "small_input",
    "batch_norm",
    "unfused_conv",
    "conv_transpose_tiles",
    "loop_conv",
)
#: The fast paths used by default on the CPU backend when XLA:CPU computes convolutions
#: itself (Eigen; the flags of ``cnn_jax.apply_xla_cpu_defaults``). Chosen by measurement
#: (``benchmarks/train_step_cpu.py``; ``docs/ENGINEERING.md``, "CPU tuning"): XLA's own
#: dense-convolution derivatives are as fast as the per-tap products there, and the
#: ``max_pool`` tangent was slower than ``cnn_jax.ops.pool``'s rule at every measured shape.
CPU_DEFAULT = frozenset(
    {
        "depthwise",
        "grouped",
        "conv_transpose",
        "materialize",
        "small_input",
        "batch_norm",
        "unfused_conv",
        "conv_transpose_tiles",
        "loop_conv",
    }
)
#: The CPU default when XLA hands convolutions to YNNPACK (jaxlib 0.10's own default,
#: i.e. ``XLA_FLAGS`` without the flag of ``cnn_jax.apply_xla_cpu_defaults``): YNNPACK's
#: kernel gradients are slow, and the per-tap products of ``'conv'`` win there.
#: ``unfused_conv`` is left out: there YNNPACK computes every convolution anyway.
#: ``loop_conv`` stays (lax's kernel gradient inside a loop was as slow with YNNPACK; the
#: fix was measured with XLA's own convolutions only).
CPU_DEFAULT_YNN = (CPU_DEFAULT - {"unfused_conv"}) | {"conv"}
#: The environment variable read when no ``use_fast_paths`` block is active.
ENV_VAR = "CNN_JAX_FAST_PATHS"

_OVERRIDE: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "cnn_jax_fast_paths", default=None
)
_IN_LOOP: contextvars.ContextVar[bool] = contextvars.ContextVar("cnn_jax_loop_body", default=False)
#: The text of JAX's ``TypeError`` for ``jax.jvp`` of a ``jax.custom_vjp`` function.
_JVP_OF_CUSTOM_VJP = "forward-mode autodiff (jvp) to a custom_vjp"
_LOOP_BODY_NAME = "cnn_jax.ops.loop_body()"


# --------------------------------------------------------------------------- switch


def _parse(value: Any, name: str) -> frozenset[str] | None:
    """``True``/``False``/names/``'auto'`` -> a set of names (``None`` for the default)."""
    if isinstance(value, (bool, np.bool_)):
        return frozenset(FAST_PATHS) if value else frozenset()
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "auto"):
            return None
        if text in ("1", "true", "on", "yes", "all"):
            return frozenset(FAST_PATHS)
        if text in ("0", "false", "off", "no", "none"):
            return frozenset()
        value = [v.strip() for v in text.split(",") if v.strip()]
    if isinstance(value, Iterable):
        names = frozenset(value)
        unknown = sorted(str(v) for v in names - set(FAST_PATHS))
        if unknown:
            raise ValueError(
                f"`{name}` (={value!r}) names unknown fast paths {unknown}; known: "
                f"{', '.join(FAST_PATHS)}"
            )
        return names
    raise TypeError(f"`{name}` must be a bool, 'auto', or names from {FAST_PATHS}, got {value!r}")


@contextlib.contextmanager
def use_fast_paths(enabled: bool | str | Iterable[str] = True) -> Iterator[None]:
    """Turns the fast paths on or off for the ops traced inside the block.

    Read at trace time: it affects the ops called (or the functions ``jax.jit`` traces)
    inside the block, not the programs compiled before it.

    Args:
      enabled: ``True`` (all of ``FAST_PATHS``), ``False`` (none: plain ``lax`` and the
        JAX derivatives), ``'auto'`` (the backend's default), or an iterable (or a
        comma-separated string) of names from ``FAST_PATHS``.

    Yields:
      Nothing.

    Raises:
      TypeError, ValueError: for an ``enabled`` that is none of these.

    Example::

      with cnn_jax.ops.use_fast_paths(False):
          grads = jax.jit(jax.grad(loss))(params)  # traced here: lax derivatives
    """
    token = _OVERRIDE.set(_parse(enabled, "enabled"))
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


@contextlib.contextmanager
def loop_body() -> Iterator[None]:
    """Marks the ops traced inside the block as the body of a loop (``lax.scan``, ``nn.scan``).

    Read at trace time, like :func:`use_fast_paths`: wrap the call that traces the loop
    body (for ``nn.scan``, the call of the scanned module); a function ``jax.jit`` traced
    before keeps its trace. Only the ``'loop_conv'`` fast path reads it; it changes no
    value.

    Yields:
      Nothing.

    Raises:
      TypeError: forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) of a dense
        convolution traced inside the block under ``'loop_conv'``, whose derivatives
        are reverse mode only; the message names the two ways out.

    Example::

      with cnn_jax.ops.loop_body():
          h, _ = nn.scan(Block, variable_axes={"params": 0}, length=n)(...)(h, None)
    """
    token = _IN_LOOP.set(True)
    try:
        yield
    except TypeError as e:
        if _JVP_OF_CUSTOM_VJP not in str(e) or _LOOP_BODY_NAME in str(e):
            raise  # not JAX's error, or already explained by an inner block
        raise TypeError(
            "forward-mode differentiation (jax.jvp, jax.jacfwd) reached a function traced "
            f"inside {_LOOP_BODY_NAME} that defines reverse mode only: there the "
            "'loop_conv' fast path gives dense convolutions a jax.custom_vjp. For forward "
            "mode, trace the loop body outside loop_body(), or without 'loop_conv' "
            "(cnn_jax.ops.use_fast_paths with the other paths). JAX's error: " + str(e)
        ) from e
    finally:
        _IN_LOOP.reset(token)


def in_loop_body() -> bool:
    """Whether the ops traced now are inside a :func:`loop_body` block."""
    return _IN_LOOP.get()


def enabled_fast_paths() -> frozenset[str]:
    """The fast paths in effect now (see the module docstring for the order of rules).

    Returns:
      A subset of ``FAST_PATHS``.

    Raises:
      ValueError: if ``CNN_JAX_FAST_PATHS`` holds an unknown value.
    """
    names = _OVERRIDE.get()
    if names is None:
        names = _parse(os.environ.get(ENV_VAR, ""), ENV_VAR)
    if names is None:
        if jax.default_backend() != "cpu":
            names = frozenset()
        else:
            names = CPU_DEFAULT_YNN if ynn_convolutions() else CPU_DEFAULT
    return names


def ynn_convolutions(xla_flags: str | None = None) -> bool:
    """Whether XLA:CPU hands convolutions to YNNPACK under these ``XLA_FLAGS``.

    jaxlib 0.10 does by default; ``--xla_cpu_experimental_ynn_fusion_type`` changes it
    (a list that overwrites the default, or ``+``/``-`` items that edit it).

    Args:
      xla_flags: the flags (``os.environ['XLA_FLAGS']`` when ``None``).

    Returns:
      ``True`` if convolutions go to YNNPACK.
    """
    flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    value = None
    for flag in flags.split():
        name, _, v = flag.lstrip("-").partition("=")
        if name == "xla_cpu_experimental_ynn_fusion_type":
            value = v
    if value is None:
        return True
    items = [i.strip().lower() for i in value.split(",") if i.strip()]
    if items and all(i[0] in "+-" for i in items):
        return "-individual_convolution" not in items
    return "individual_convolution" in items


def fast_path_enabled(name: str) -> bool:
    """Whether the fast path ``name`` (one of ``FAST_PATHS``) is in effect now."""
    if name not in FAST_PATHS:
        raise ValueError(f"`name` (={name!r}) must be one of {FAST_PATHS}")
    return name in enabled_fast_paths()
