"""Faster derivatives of convolutions and max pooling on XLA:CPU, and the switch for them.

JAX's automatic derivatives of some convolutions are slow on XLA:CPU: the grouped
kernel gradient (``batch_group_count``) and depthwise convolutions 40-230x slower than
PyTorch, the transposed convolution's kernel gradient 12x (docs/RESULTS.md,
"Convolution ops"), and, when XLA hands convolutions to YNNPACK (jaxlib 0.10's
default, turned off by ``cnn_jax.xla_defaults``), every dense kernel gradient 3-20x
slower than the forward pass. This module computes the same functions with the same
forward programs and cheaper derivatives, each path under a name of ``FAST_PATHS``
(which ones are on by default was measured: ``CPU_DEFAULT``):

* **dense convolution** (``groups == 1``, name ``'conv'``): the forward pass is
  ``lax.conv_general_dilated``; the derivative is a ``jax.custom_jvp`` whose tangent is
  written so that its *transpose* (what reverse mode runs) is fast. The kernel tangent
  is a sum over the window's taps of ``dot(shifted x, kernel tap)``, whose transpose is
  one matrix product ``shifted xᵀ @ dy`` per tap: the im2col kernel gradient
  (Chellapilla, Puri & Simard 2006, "High performance convolutional neural networks for
  document processing") without building the patch matrix (with it, one product, for
  fewer than ``PATCHES_BELOW_CHANNELS`` input channels). XLA's own kernel gradient is
  kept where it was measured faster (small images with few channels:
  ``kernel_grad_by_products``). The input tangent of a strided convolution is an im2col
  product, whose transpose is ``dy @ Wᵀ`` scattered back with strided pads (col2im)
  instead of a zero-dilated (``lhs_dilation``) convolution; at stride 1 it is ``lax``'s.
* **depthwise convolution** (``groups == C_in``, ``'depthwise'``): a sum of shifted,
  per-channel scaled copies of the input, forward and input derivative (fused loops, no
  convolution); the kernel gradient is a loop over chunks of the batch
  (``depthwise_chunk``) that reads the input and the cotangent once, in cache, for all
  the taps, instead of once per tap.
* **grouped convolution** (``'grouped'``): as the dense one, the kernel gradient one
  product batched over the groups.
* **transposed convolution** (``groups == 1``, ``'conv_transpose'``): the forward pass is
  the ``lax`` zero-dilated convolution (Dumoulin & Visin 2016, §4); the kernel tangent is
  written as col2im, so that the kernel gradient is one product per tap.
* **transposed convolution tiling its output** (``groups == 1``, kernel equal to the
  stride, no dilation, no padding: a U-Net's 2x2/2 up-sampling, ``'conv_transpose_tiles'``):
  every output cell gets exactly one tap, so the layer is one product
  ``y @ kernel`` followed by a reshape that puts the taps side by side (depth to space, the
  "pixel shuffle" of Shi et al. 2016). The zero-dilated convolution multiplies
  ``prod(stride) - 1`` zeros for every useful product. Plain differentiable code: its
  derivatives are products too.
* **max pooling** (non-overlapping, undilated windows with at least
  ``MAX_POOL_MIN_CHANNELS`` channels, ``'max_pool'``, off by default: measured slower
  than the rule it replaces): the tangent picks, for every
  window, the tap holding PyTorch's arg-max, from the input reshaped to
  ``(N, o_1, k_1, ..., C)``: one fused loop, whose transpose is one fused loop too,
  instead of the gather (and scatter) of ``cnn_jax.ops.pool``'s rule. Overlapping windows
  keep that rule.

* **few input channels** (``groups == 1``, at most ``SMALL_INPUT_MAX_CHANNELS`` input
  channels and ``SMALL_INPUT_MAX_TERMS`` products per output, ``'small_input'``: a
  network's first layer on grey or RGB images): the forward pass is a sum of shifted
  input channels times kernel rows (broadcast products, one fused loop, its result
  stored), which XLA:CPU's convolution computes 2.5-3.3x slower; the derivatives are
  ``lax``'s.
* **batch normalization in training mode** (``'batch_norm'``, used by
  ``cnn_jax.layers.BatchNorm`` on one device): the normalization's tangent is written
  as ``(I - P) D tx`` (``D`` the per-channel factor ``scale / std``, ``P`` the projection
  onto each channel's constants and normalized input), so that reverse mode needs two
  reductions of the output's cotangent, ``sum(ct)`` and ``sum(x̂ ct)``, which are also the
  bias and scale gradients (XLA merges the copies): four reductions per layer with the
  forward statistics, where JAX's derivative of the plain formula takes six.
* **stored input** (``'materialize'``, for dense, grouped and transposed convolutions):
  under differentiation the input is computed into a buffer of its own (``keep_input``),
  so that XLA:CPU reads it in the kernel gradient instead of recomputing the elementwise
  chain that produced it inside that gradient's layout transposes.
* **convolution outside YNNPACK's fusions** (``'unfused_conv'``, inference only, float32):
  the output of a convolution passes through a no-op XLA:CPU keeps and YNNPACK does not
  support (``unfused_conv``), so that XLA's own convolution computes it instead of a
  YNNPACK fusion grown from the max pool or mean that consumes it. Differentiated, the
  program is unchanged.

The fast paths apply to floating-point (and complex) arrays only: integer
convolutions are ``lax``'s, which adds up in the integers' own type (the broadcast
products above add up in float32, which would round sums beyond 2**24 and saturate
instead of wrapping).

Every rule is a ``custom_jvp`` (or plain differentiable code), so forward mode
(``jax.jvp``, ``jax.jacfwd``), reverse mode and higher derivatives all work, and give
the same values as ``lax`` (``tests/test_fast_paths.py``). In forward mode the tangents
are computed by the formulations above, which are slower than ``lax``'s forward
convolution: the speed-up is for reverse mode (training). Training-step times against
the ``lax`` programs, flax and PyTorch: ``python -m benchmarks.train_step_cpu``.

The switch. Which fast paths are used is decided **at trace time**, when an op is
called (under ``jax.jit``: when the function is traced, not when it runs):

1. inside ``with use_fast_paths(...)``: what the innermost such block says;
2. else the environment variable ``CNN_JAX_FAST_PATHS``: ``0``/``false``/``off``
   (none), ``1``/``true``/``on`` (all), ``auto`` or unset (the default below), or a
   comma-separated list of names from ``FAST_PATHS``;
3. else the default: ``CPU_DEFAULT`` when ``jax.default_backend()`` is ``'cpu'`` (plus
   ``'conv'`` and less ``'unfused_conv'`` when ``XLA_FLAGS`` leaves convolutions to
   YNNPACK: ``CPU_DEFAULT_YNN``), none
   on GPU/TPU (cuDNN's and the TPU's convolutions and their gradients are fast, and
   the formulations here were measured on CPU only).

Because the choice is made while tracing, a program that is already traced keeps the
choice it was traced with: ``jax.jit`` (and ``jax.make_jaxpr``) cache traces per Python
function object, so after changing the switch, trace a new function (a new ``lambda``
or ``jax.grad(...)``) or call ``jax.clear_caches()``. The switch lives in a
``contextvars.ContextVar`` (each thread and task sees its own) and is never set by the
library itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

__all__ = [
    "CPU_DEFAULT",
    "CPU_DEFAULT_YNN",
    "ENV_VAR",
    "FAST_PATHS",
    "ConvGeometry",
    "TransposeGeometry",
    "batch_norm_train",
    "conv",
    "conv_transpose",
    "depthwise_chunk",
    "dimension_numbers",
    "enabled_fast_paths",
    "fast_path_enabled",
    "keep_input",
    "max_pool_tangent",
    "small_input",
    "tiles_output",
    "transpose_kernel",
    "unfused_conv",
    "use_fast_paths",
    "ynn_convolutions",
    "ynn_could_take",
]

Array = Any

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
)
#: The fast paths used by default on the CPU backend when XLA:CPU computes convolutions
#: itself (Eigen; the default XLA flags of ``cnn_jax.xla_defaults``). Chosen by
#: measurement (``benchmarks/train_step_cpu.py``, docs/RESULTS.md): there XLA's own
#: dense-convolution derivatives are within noise of the per-tap products or faster,
#: while depthwise, grouped and transposed convolutions still gain 3-4x per training
#: step. The ``max_pool`` tangent was slower than ``cnn_jax.ops.pool``'s rule at every
#: measured shape (6-256 channels, 2x2 and 3x3 windows) and is off by default. The
#: stored input (``materialize``) cut a ResNet-20 training step from 889 to 585 ms
#: (docs/RESULTS.md, "CPU training steps, second pass"). The forward pass of a
#: convolution with 1-3 input channels as broadcast products (``small_input``) cut
#: LeNet-5's first layer from 12.0 to 3.6 ms (docs/RESULTS.md, "CPU training steps, third
#: pass"). The batch-norm derivative (``batch_norm``) takes 0.71-0.92x the time of JAX's
#: for a training-mode batch norm's forward and backward pass (``python -m
#: benchmarks.ops_norm``; docs/RESULTS.md, "CPU, fifth pass").
#: Keeping a convolution out of the YNNPACK fusion of its consumers in inference
#: (``unfused_conv``) cut airbench94's inference to 0.91x of its time and the Xception
#: block's to 0.86x (``--versus`` run; 0.84x and 0.70x in an ad-hoc loop; docs/RESULTS.md,
#: "CPU, seventh pass"). A transposed convolution whose kernel equals its stride as one
#: product (``conv_transpose_tiles``): 0.59-0.84x the forward time and 0.40-0.77x with
#: gradients on the U-Net decoder's three layers against the ``conv_transpose`` path (ad
#: hoc), the whole decoder 0.93-1.00x training and 0.88-0.93x inference (same section).
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
    }
)
#: The CPU default when XLA hands convolutions to YNNPACK (jaxlib 0.10's own default,
#: i.e. ``XLA_FLAGS`` without ``cnn_jax.xla_defaults``' flag): YNNPACK's kernel
#: gradients are slow, and the per-tap products win by up to 2x per training step.
#: ``unfused_conv`` is left out: there YNNPACK computes every convolution anyway.
CPU_DEFAULT_YNN = (CPU_DEFAULT - {"unfused_conv"}) | {"conv"}
#: The environment variable read when no ``use_fast_paths`` block is active.
ENV_VAR = "CNN_JAX_FAST_PATHS"

_OVERRIDE: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "cnn_jax_fast_paths", default=None
)


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


# --------------------------------------------------------------------------- materialize


def _materialized(x: Array) -> Array:
    """``x``, computed into a buffer of its own: XLA fuses nothing across this point.

    XLA removes ``lax.optimization_barrier`` before fusing, so the boundary is a
    ``while`` loop that XLA cannot prove away: it runs once (no times if the first
    element is NaN) and XORs the bits of ``x`` with a zero it cannot fold. That is exact
    for every value (NaN payloads, infinities, signed zeros, subnormals, which a float
    multiply by one would flush to zero on XLA:CPU). Complex arrays are returned as they
    are (no same-width integer type to view them as).
    """
    if x.size == 0 or jnp.issubdtype(x.dtype, jnp.complexfloating):
        return x
    first = lax.slice(x, (0,) * x.ndim, (1,) * x.ndim).reshape(())
    trips = (first == first).astype(jnp.int32)
    if jnp.issubdtype(x.dtype, jnp.floating):
        bits = jnp.dtype(f"int{8 * jnp.dtype(x.dtype).itemsize}")
    else:
        bits = x.dtype
    zero = (trips - 1).astype(bits)  # 0 whenever the body runs

    def body(carry: tuple[Array, Array]) -> tuple[Array, Array]:
        i, v = carry
        flipped = lax.bitcast_convert_type(v, bits) ^ zero
        return i + 1, lax.bitcast_convert_type(flipped, x.dtype)

    return lax.while_loop(lambda c: c[0] < trips, body, (jnp.int32(0), x))[1]


@jax.custom_jvp
def _stored(x: Array) -> Array:
    """``x`` when not differentiated; under differentiation, ``x`` materialized."""
    return x


@jax.custom_jvp
def _stored_primal(x: Array) -> Array:
    return _materialized(x)


@_stored.defjvp
def _stored_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    return _stored_primal(primals[0]), tangents[0]


@_stored_primal.defjvp
def _stored_primal_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    # The loop is never differentiated (reverse mode cannot transpose a while loop).
    return _stored_primal(primals[0]), tangents[0]


def keep_input(x: Array) -> Array:
    """A convolution's input, kept in memory for its derivatives (fast path ``'materialize'``).

    XLA:CPU fuses the elementwise chain that produces an activation (batch norm, ReLU,
    residual sums, several blocks deep) into each of its consumers and recomputes it
    there. For the layout transpose in front of a convolution's kernel gradient that
    recomputation is 5-40x slower than reading the stored activation (ResNet-20: 433 ms
    of such transposes per training step without this, 99 ms with it; docs/RESULTS.md).
    Under differentiation this returns ``x`` from a fusion boundary, so that the forward
    convolution and its derivatives read one stored buffer; without differentiation it
    returns ``x`` unchanged (no cost in inference).

    Args:
      x: an array.

    Returns:
      ``x`` (the same values; a stored copy under differentiation).
    """
    return _stored(x) if "materialize" in enabled_fast_paths() else x


# --------------------------------------------------------------------------- unfused_conv


@jax.custom_jvp
def _unfused(y: Array) -> Array:
    """``y`` (float32) through a no-op that YNNPACK does not support: a fusion boundary.

    ``lax.reduce_precision`` to float32's own widths (8 exponent, 23 mantissa bits)
    returns every value bit for bit (NaN payloads, infinities, signed zeros,
    subnormals; tested). XLA:CPU keeps it (unlike ``lax.optimization_barrier``, which
    it removes before fusing) and fuses it into the consumer's loop. YNNPACK's fusions
    cannot contain it, so they cannot reach the convolution behind it.
    """
    return lax.reduce_precision(y, exponent_bits=8, mantissa_bits=23)


@_unfused.defjvp
def _unfused_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    # Differentiated (training), the output has other users (the derivatives), which
    # keeps it out of YNNPACK's fusions anyway: the program is left as it is.
    return primals[0], tangents[0]


#: YNNPACK (jaxlib 0.10) takes a convolution into a fusion only if its larger channel
#: count is at least this (its support rule; ``ynn_could_take``).
YNN_MIN_CHANNELS = 17


def ynn_could_take(
    x_shape: Sequence[int], y_shape: Sequence[int], window: Sequence[int], base_dilated: bool
) -> bool:
    """Whether jaxlib 0.10's YNNPACK would accept this convolution into a fusion.

    Its support rule (``IsConvolutionOpSupportedByYnn`` in XLA): two spatial dimensions,
    ``max(C_in, C_out) >= YNN_MIN_CHANNELS``, no zero-dilated input (a strided transposed
    convolution), an output and a window no larger than the input in each spatial
    dimension. (It also needs float32, float64 or int8 and no ``batch_group_count``.)

    Args:
      x_shape: the convolution's input ``(N, *spatial, C_in)`` (not zero-dilated).
      y_shape: its output ``(N, *spatial', C_out)``.
      window: the kernel's spatial size.
      base_dilated: whether the input is zero-dilated (``lhs_dilation`` above 1).

    Returns:
      ``True`` if YNNPACK could compute it.
    """
    spatial_in, spatial_out = x_shape[1:-1], y_shape[1:-1]
    return (
        len(spatial_in) == 2
        and not base_dilated
        and max(x_shape[-1], y_shape[-1]) >= YNN_MIN_CHANNELS
        and all(o <= i for o, i in zip(spatial_out, spatial_in, strict=True))
        and all(k <= i for k, i in zip(window, spatial_in, strict=True))
    )


def unfused_conv(
    y: Array,
    x_shape: Sequence[int],
    window: Sequence[int],
    base_dilated: bool = False,
) -> Array:
    """A convolution's output, kept out of its consumers' YNNPACK fusion (``'unfused_conv'``).

    XLA:CPU (jaxlib 0.10) grows a YNNPACK fusion from every reduction and reduce-window
    (a max pool, a global mean) up through its operands, and takes a convolution whose
    only user is in that fusion along, whatever ``--xla_cpu_experimental_ynn_fusion_type``
    says about lone convolutions. In inference the convolutions in front of a max pool
    (airbench94: 3 of 7), or of batch norm, ReLU and a global mean (the last layer of
    ResNet-20 and of the Xception block), are then YNNPACK's, which was 1.1-4.3x slower
    than XLA's own (Eigen) convolution on the development machine (docs/RESULTS.md, "XLA
    flags on the CPU"). Under differentiation the output has more users (the saved
    activations), so nothing is fused and nothing is added; without differentiation
    this returns ``y`` through ``_unfused``'s boundary.

    The boundary is fused into an elementwise consumer (batch norm, an activation) at no
    cost; where the output goes straight into a max pool, another convolution, a
    product or the program's result, it is one more pass over the output (about 5% of a
    64->256-channel 3x3 convolution's forward time, measured ad hoc). So it is added only
    where YNNPACK could take the convolution (``ynn_could_take``), and only for float32.
    YNNPACK also takes float64 and int8 convolutions, which are left alone (not
    measured here); it takes no bfloat16 ones, for which reduce-precision would not be
    exact on XLA:CPU anyway (it quiets signalling NaNs).

    Args:
      y: the output of a convolution.
      x_shape: the shape of its input (``lhs`` of the ``lax`` call, before any zero
        dilation).
      window: the kernel's spatial size.
      base_dilated: whether the ``lax`` call zero-dilates its input (``lhs_dilation``).

    Returns:
      ``y`` (the same values, bit for bit).
    """
    if (
        y.dtype == jnp.float32
        and "unfused_conv" in enabled_fast_paths()
        and ynn_could_take(x_shape, y.shape, window, base_dilated)
    ):
        return _unfused(y)
    return y


# --------------------------------------------------------------------------- geometry


class ConvGeometry(NamedTuple):
    """Static arguments of a convolution (hashable: a ``custom_jvp`` static argument).

    Attributes:
      strides: window strides, one per spatial dimension.
      padding: ``(lo, hi)`` zero padding per spatial dimension (non-negative).
      dilation: kernel dilation.
      groups: ``feature_group_count``.
      precision: ``lax`` precision of the convolutions and products.
    """

    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    precision: Any


def dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """Channels-last dimension numbers for ``n`` spatial dimensions (NHWC, HWIO, NHWC).

    Args:
      n: the number of spatial dimensions.

    Returns:
      The ``lax`` dimension numbers of an ``n``-D channels-last convolution.
    """
    spatial = tuple(range(1, n + 1))
    io = (0, n + 1, *spatial)
    return lax.ConvDimensionNumbers(lhs_spec=io, rhs_spec=(n + 1, n, *range(n)), out_spec=io)


def _out_shape(spatial: Sequence[int], window: Sequence[int], g: ConvGeometry) -> tuple[int, ...]:
    return tuple(
        (i + lo + hi - (d * (k - 1) + 1)) // s + 1
        for i, k, s, d, (lo, hi) in zip(spatial, window, g.strides, g.dilation, g.padding)
    )


def _taps(window: Sequence[int]) -> list[tuple[int, ...]]:
    return list(np.ndindex(*window))


def _tap_slice(
    xp: Array, tap: Sequence[int], out: Sequence[int], strides: Sequence[int], dil: Sequence[int]
) -> Array:
    """``xp[:, t*d : t*d + (o-1)*s + 1 : s, :]`` per spatial dimension: one tap's inputs."""
    start = tuple(t * d for t, d in zip(tap, dil))
    limit = tuple(st + (o - 1) * s + 1 for st, o, s in zip(start, out, strides))
    return lax.slice(xp, (0, *start, 0), (xp.shape[0], *limit, xp.shape[-1]), (1, *strides, 1))


def _pad(x: Array, g: ConvGeometry) -> Array:
    if not any(lo or hi for lo, hi in g.padding):
        return x
    return lax.pad(
        x, np.array(0, x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in g.padding), (0, 0, 0)]
    )


def _dot(a: Array, b: Array, precision: Any) -> Array:
    """``a @ b`` for 2-D operands."""
    return lax.dot_general(a, b, (((1,), (0,)), ((), ())), precision=precision)


def _lax_conv(x: Array, w: Array, g: ConvGeometry) -> Array:
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=g.strides,
        padding=g.padding,
        rhs_dilation=g.dilation,
        dimension_numbers=dimension_numbers(x.ndim - 2),
        feature_group_count=g.groups,
        precision=g.precision,
    )


# --------------------------------------------------------------------------- conv

#: Below this many input channels, the kernel tangent uses one product with the
#: concatenated taps (im2col) instead of one product per tap.
PATCHES_BELOW_CHANNELS = 8
#: ``C_in * C_out`` from which the products beat XLA's kernel-gradient convolution at
#: any spatial size, and ``(C_in * C_out, output positions per example)`` from which
#: they beat it on large images (measured on a 2-core AMD EPYC, see
#: ``benchmarks/train_step_cpu.py``: XLA's kernel gradient is competitive for small
#: images and few channels, and 3-20x slower than the products for large images and
#: 1x1 kernels).
TAPS_MIN_CHANNEL_PRODUCT = 8192
TAPS_LARGE_IMAGE = (192, 400)


def kernel_grad_by_products(
    x_shape: Sequence[int], w_shape: Sequence[int], g: ConvGeometry
) -> bool:
    """Whether the kernel derivative of a dense convolution uses the per-tap products.

    Args:
      x_shape: the input shape ``(N, *spatial, C_in)``.
      w_shape: the kernel shape ``(*window, C_in, C_out)``.
      g: the geometry.

    Returns:
      ``True`` for the products of ``_tangent_kernel``, ``False`` for ``lax``'s own
      derivative (a convolution).
    """
    n = len(x_shape) - 2
    window = w_shape[:n]
    if math.prod(window) == 1:
        return True
    channels = w_shape[-2] * w_shape[-1]
    positions = math.prod(_out_shape(x_shape[1:-1], window, g))
    if channels >= TAPS_MIN_CHANNEL_PRODUCT:
        return True
    return channels >= TAPS_LARGE_IMAGE[0] and positions >= TAPS_LARGE_IMAGE[1]


def _im2col(x: Array, window: Sequence[int], out: Sequence[int], g: ConvGeometry) -> Array:
    """``(N, *out, T * C)`` patches of the zero-padded ``x``, features ordered (tap, C)."""
    xp = _pad(x, g)
    cols = [_tap_slice(xp, t, out, g.strides, g.dilation) for t in _taps(window)]
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def _tangent_kernel(x: Array, tw: Array, g: ConvGeometry) -> Array:
    """``conv(x, tw)`` written so that its transpose in ``tw`` is one product per tap.

    Groups are a batch dimension of the products.
    """
    n = x.ndim - 2
    window, (cig, co) = tw.shape[:n], tw.shape[n:]
    out = _out_shape(x.shape[1:-1], window, g)
    groups = g.groups
    cog = co // groups
    m = x.shape[0] * math.prod(out)
    taps = _taps(window)
    if groups == 1:
        if not kernel_grad_by_products(x.shape, tw.shape, g):
            return _lax_conv(x, tw, g)
        if cig < PATCHES_BELOW_CHANNELS or len(taps) == 1:
            cols = _im2col(x, window, out, g).reshape(m, len(taps) * cig)
            y = _dot(cols, tw.reshape(len(taps) * cig, co), g.precision)
        else:
            xp = _pad(x, g)
            y = None
            for t in taps:
                s = _tap_slice(xp, t, out, g.strides, g.dilation).reshape(m, cig)
                p = _dot(s, tw[t], g.precision)
                y = p if y is None else y + p
        return y.reshape(x.shape[0], *out, co)
    # Grouped: (M, T, G, cig) x (T, cig, G, cog) -> contract (T, cig), batch G.
    cols = _im2col(x, window, out, g).reshape(m, len(taps), groups, cig)
    k = tw.reshape(len(taps), cig, groups, cog)
    y = lax.dot_general(cols, k, (((1, 3), (0, 1)), ((2,), (2,))), precision=g.precision)
    # (G, M, cog) -> (M, G * cog)
    return jnp.moveaxis(y, 0, 1).reshape(x.shape[0], *out, co)


def _tangent_input(tx: Array, w: Array, g: ConvGeometry) -> Array:
    """``conv(tx, w)``: ``lax`` at stride 1; im2col when strided (transpose: col2im)."""
    if all(s == 1 for s in g.strides) or g.groups != 1:
        return _lax_conv(tx, w, g)
    n = tx.ndim - 2
    window, (ci, co) = w.shape[:n], w.shape[n:]
    out = _out_shape(tx.shape[1:-1], window, g)
    m = tx.shape[0] * math.prod(out)
    t = math.prod(window)
    cols = _im2col(tx, window, out, g).reshape(m, t * ci)
    return _dot(cols, w.reshape(t * ci, co), g.precision).reshape(tx.shape[0], *out, co)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv(x: Array, w: Array, g: ConvGeometry) -> Array:
    return _lax_conv(x, w, g)


def _bilinear_tangent(
    out: Array,
    t_a: Any,
    t_b: Any,
    along_a: Callable[[Array], Array],
    along_b: Callable[[Array], Array],
) -> Array:
    """The tangent of ``out = f(a, b)``, linear in each argument: ``f(t_a, b) + f(a, t_b)``.

    ``along_a(t_a)`` and ``along_b(t_b)`` compute the two parts; a part whose tangent is a
    ``SymbolicZero`` is skipped, so reverse mode transposes only what is needed.
    """
    parts = [f(t) for t, f in ((t_a, along_a), (t_b, along_b)) if not isinstance(t, SymbolicZero)]
    if not parts:
        return jnp.zeros_like(out)
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def _def_bilinear_jvp(
    prim: Any,
    along_a: Callable[[Array, Array, Any], Array],
    along_b: Callable[[Array, Array, Any], Array],
) -> None:
    """Gives ``prim(a, b, g)`` (a ``custom_jvp``, bilinear in ``a`` and ``b``) its tangent.

    The tangent is ``along_a(t_a, b, g) + along_b(a, t_b, g)``, the part of a symbolically
    zero tangent skipped (``_bilinear_tangent``).
    """

    def jvp(g: Any, primals: tuple[Array, Array], tangents: tuple[Any, Any]):
        a, b = primals
        t_a, t_b = tangents
        out = prim(a, b, g)
        return out, _bilinear_tangent(
            out, t_a, t_b, lambda t: along_a(t, b, g), lambda t: along_b(a, t, g)
        )

    prim.defjvp(jvp, symbolic_zeros=True)


_def_bilinear_jvp(_conv, _tangent_input, _tangent_kernel)


def _sum_over_taps(
    x: Array, window: Sequence[int], g: ConvGeometry, term: Callable[[Array, Any], Array]
) -> Array:
    """``sum over taps t of term(x's inputs at tap t, t)``, in float32 or wider.

    The loop of the depthwise and the few-input-channel forward passes: one fused loop
    over shifted slices of the padded input, no convolution.
    """
    out = _out_shape(x.shape[1:-1], window, g)
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    xp = _pad(x, g)
    y = None
    for t in _taps(window):
        p = term(_tap_slice(xp, t, out, g.strides, g.dilation).astype(acc_dtype), t)
        y = p if y is None else y + p
    return y


def _depthwise(x: Array, w: Array, g: ConvGeometry) -> Array:
    """Depthwise convolution as a sum over taps of shifted inputs times per-channel weights."""
    n = x.ndim - 2
    c = x.shape[-1]
    mult = w.shape[-1] // c
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)

    def term(s: Array, t: Any) -> Array:
        k = w[t].reshape(c, mult).astype(acc_dtype)  # (1, C * m) -> (C, m)
        return s[..., None] * k if mult > 1 else s * k[:, 0]

    y = _sum_over_taps(x, w.shape[:n], g, term)
    if mult > 1:
        y = y.reshape(*y.shape[:-2], c * mult)
    return y.astype(x.dtype)


#: Bytes of a depthwise convolution's input per step of its kernel derivative's loop
#: (``depthwise_chunk``). From an ad-hoc sweep of a 3x3 depthwise layer's kernel gradient
#: on the 2-core development machine (docs/RESULTS.md, "CPU, fifth pass"): at six shapes
#: from (128, 32, 32, 32) to (64, 19, 19, 728) the chunk this budget picks was the fastest
#: or within 20% of it, and 2.4-5.5x faster than one reduction per tap over the whole batch.
DEPTHWISE_CHUNK_BYTES = 5 * 2**18


def depthwise_chunk(x_shape: Sequence[int], itemsize: int) -> int:
    """Examples per step of the loop of a depthwise convolution's kernel derivative.

    Args:
      x_shape: the input shape ``(N, *spatial, C)``.
      itemsize: bytes per input element.

    Returns:
      The largest divisor ``d`` of ``N`` with ``d`` examples within
      ``DEPTHWISE_CHUNK_BYTES`` (at least 1).
    """
    n, example = x_shape[0], math.prod(x_shape[1:]) * itemsize
    fits = [d for d in range(1, n + 1) if n % d == 0 and d * example <= DEPTHWISE_CHUNK_BYTES]
    return max(fits, default=1)


def _batch_sharded(x: Array) -> bool:
    """Whether ``x``'s leading axis is sharded over an explicit mesh axis (in its type)."""
    spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None)
    return bool(spec) and spec[0] is not None


def _depthwise_kernel_tangent(x: Array, tw: Array, g: ConvGeometry) -> Array:
    """``_depthwise(x, tw)`` as a loop over chunks of the batch (``depthwise_chunk``).

    Its transpose, the kernel gradient, is then a loop too: each step reads one chunk of
    the input and of the output's cotangent while they are in cache and adds all the
    taps' sums to the kernel's cotangent. Differentiated directly, the sum over taps has
    a transpose of one reduction per tap over the whole batch, each reading the input
    and the cotangent again (or writing each tap's slice out first): 2.4-5.5x slower on
    the CPU (docs/RESULTS.md, "CPU, fifth pass"). The body is rematerialized
    (``jax.checkpoint``) so that the shifted slices are computed inside the transposed
    loop, not stored by the forward one.
    """
    n = x.shape[0]
    chunk = depthwise_chunk(x.shape, x.dtype.itemsize)
    if chunk == n or _batch_sharded(x):
        # One chunk: no loop. A batch sharded over an explicit mesh axis can't be
        # scanned over (JAX requires the scanned axis replicated): the plain sum.
        return _depthwise(x, tw, g)

    def body(carry: None, xc: Array) -> tuple[None, Array]:
        return carry, _depthwise(xc, tw, g)

    xs = x.reshape(n // chunk, chunk, *x.shape[1:])
    _, ys = lax.scan(jax.checkpoint(body, prevent_cse=False), None, xs)
    return ys.reshape(n, *ys.shape[2:])


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _depthwise_conv(x: Array, w: Array, g: ConvGeometry) -> Array:
    return _depthwise(x, w, g)


_def_bilinear_jvp(_depthwise_conv, _depthwise, _depthwise_kernel_tangent)


#: A dense convolution with at most this many input channels ...
SMALL_INPUT_MAX_CHANNELS = 3
#: ... and at most this many products per output value (taps x input channels) has its
#: forward pass computed as broadcast products (fast path ``'small_input'``). Forward
#: passes on the 2-core development machine (``python -m benchmarks.ops_conv --only "first
#: layers"``, docs/RESULTS.md): 0.30x ``lax``'s time for 1->6 5x5 (25 products), 0.36x for
#: 3->16 3x3 (27), 0.40x for 3->24 2x2 (12); 6->16 5x5 (150) is left to ``lax``.
SMALL_INPUT_MAX_TERMS = 32


def small_input(x_shape: Sequence[int], w_shape: Sequence[int], g: ConvGeometry) -> bool:
    """Whether a convolution's forward pass uses the broadcast products (``'small_input'``).

    Args:
      x_shape: the input shape ``(N, *spatial, C_in)``.
      w_shape: the kernel shape ``(*window, C_in / groups, C_out)``.
      g: the geometry.

    Returns:
      ``True`` for a dense convolution with few input channels and few products per
      output (``SMALL_INPUT_MAX_CHANNELS``, ``SMALL_INPUT_MAX_TERMS``).
    """
    c_in = x_shape[-1]
    taps = math.prod(w_shape[:-2])
    return (
        g.groups == 1
        and 1 <= c_in <= SMALL_INPUT_MAX_CHANNELS
        and taps * c_in <= SMALL_INPUT_MAX_TERMS
    )


def _broadcast_products(x: Array, w: Array, g: ConvGeometry) -> Array:
    """A dense convolution: the sum over taps and input channels of shifted inputs x kernel rows."""
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)

    def term(s: Array, t: Any) -> Array:
        k = w[t].astype(acc_dtype)  # (C_in, C_out)
        p = s[..., :1] * k[0]
        for c in range(1, x.shape[-1]):
            p = p + s[..., c : c + 1] * k[c]
        return p

    return _sum_over_taps(x, w.shape[: x.ndim - 2], g, term).astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _small_input_conv(x: Array, w: Array, g: ConvGeometry) -> Array:
    # Stored: fused into its consumer (ReLU and a max pool, say) the products are
    # recomputed there, and LeNet-5's inference was slower than with lax.
    return _stored_primal(_broadcast_products(x, w, g))


# lax's derivatives: differentiating the products gives a kernel gradient of one
# reduction per tap and channel, which made a LeNet-5 training step several times slower.
_def_bilinear_jvp(_small_input_conv, _lax_conv, _lax_conv)


def conv(x: Array, w: Array, g: ConvGeometry) -> Array:
    """Convolution with the fast derivatives, or ``lax`` where no fast path applies.

    Integer arrays always take ``lax``'s convolution.

    The caller (``cnn_jax.ops.conv``) has checked the arguments, promoted the dtypes and
    applied non-zero padding modes.

    Args:
      x: ``(N, *spatial, C_in)``.
      w: ``(*window, C_in / groups, C_out)``.
      g: the geometry (``padding`` as explicit zero-padding pairs).

    Returns:
      ``(N, *out, C_out)``, equal to ``lax.conv_general_dilated`` with the same arguments.
    """
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return _lax_conv(x, w, g)  # integers: exact sums in their own type
    enabled = enabled_fast_paths()
    c_in = x.shape[-1]
    depthwise = g.groups > 1 and g.groups == c_in and w.shape[-2] == 1
    if depthwise and "depthwise" in enabled:
        # Shifted slices, no layout transposes: the input is best fused, not stored.
        return _depthwise_conv(x, w, g)
    x = keep_input(x)
    if "small_input" in enabled and small_input(x.shape, w.shape, g):
        return _small_input_conv(x, w, g)
    if g.groups == 1:
        out = _conv(x, w, g) if "conv" in enabled else _lax_conv(x, w, g)
    elif depthwise:
        out = _lax_conv(x, w, g)
    else:
        out = _conv(x, w, g) if "grouped" in enabled else _lax_conv(x, w, g)
    return unfused_conv(out, x.shape, w.shape[: x.ndim - 2])


# --------------------------------------------------------------------------- conv_transpose


class TransposeGeometry(NamedTuple):
    """Static arguments of ``conv_transpose``'s ``lax`` call and of its adjoint.

    Attributes:
      strides: the forward convolution's strides (``lhs_dilation`` of the ``lax`` call).
      lax_padding: the ``lax`` call's padding pairs.
      fwd_low: the forward convolution's low padding per spatial dimension.
      dilation: kernel dilation.
      precision: ``lax`` precision.
      groups: the forward convolution's groups (the fast paths take 1 only).
    """

    strides: tuple[int, ...]
    lax_padding: tuple[tuple[int, int], ...]
    fwd_low: tuple[int, ...]
    dilation: tuple[int, ...]
    precision: Any
    groups: int


def transpose_kernel(kernel: Array, groups: int = 1) -> Array:
    """The kernel of the transposed convolution: spatially flipped, ``I``/``O`` swapped.

    Args:
      kernel: a forward kernel ``(*window, C_in / groups, C_out)``.
      groups: the forward convolution's groups.

    Returns:
      A kernel ``(*window, C_out / groups, C_in)`` for ``lax`` such that a convolution
      of the zero-dilated output with it is the adjoint of the forward convolution.
    """
    n = kernel.ndim - 2
    *window, ci_g, c_out = kernel.shape
    co_g = c_out // groups
    k = kernel.reshape(*window, ci_g, groups, co_g)
    k = jnp.moveaxis(k, (n, n + 1, n + 2), (n + 2, n + 1, n))  # -> (*w, co_g, groups, ci_g)
    k = k.reshape(*window, co_g, groups * ci_g)
    return jnp.flip(k, axis=tuple(range(n)))


def _lax_conv_transpose(y: Array, k: Array, g: TransposeGeometry) -> Array:
    """The zero-dilated ``lax`` convolution (Dumoulin & Visin 2016, §4), any groups."""
    n = y.ndim - 2
    return lax.conv_general_dilated(
        y,
        transpose_kernel(k, g.groups),
        window_strides=(1,) * n,
        padding=g.lax_padding,
        lhs_dilation=g.strides,
        rhs_dilation=g.dilation,
        dimension_numbers=dimension_numbers(n),
        feature_group_count=g.groups,
        precision=g.precision,
    )


def _transpose_out_shape(y_shape: Sequence[int], window: Sequence[int], g: TransposeGeometry):
    return tuple(
        (i - 1) * s + 1 + lo + hi - (d * (k - 1) + 1) + 1
        for i, k, s, d, (lo, hi) in zip(y_shape, window, g.strides, g.dilation, g.lax_padding)
    )


def _col2im_kernel_tangent(y: Array, tk: Array, g: TransposeGeometry) -> Array:
    """``conv_transpose(y, tk)`` as ``y @ tkᵀ`` placed at every tap with strided pads.

    Transposed (reverse mode), this is one product per tap of the strided slices of
    the cotangent with ``y``: the kernel gradient of the forward convolution.
    """
    n = y.ndim - 2
    window, (ci, co) = tk.shape[:n], tk.shape[n:]
    in_sp = y.shape[1:-1]
    out = _transpose_out_shape(in_sp, window, g)
    taps = _taps(window)
    m = y.shape[0] * math.prod(in_sp)
    z = _dot(y.reshape(m, co), tk.reshape(len(taps) * ci, co).T, g.precision)
    z = z.reshape(y.shape[0], *in_sp, len(taps), ci)
    res = None
    for j, t in enumerate(taps):
        cfg = [(0, 0, 0)]
        for tt, i, s, d, lo, o in zip(t, in_sp, g.strides, g.dilation, g.fwd_low, out):
            low = tt * d - lo
            cfg.append((low, o - (low + (i - 1) * s + 1), s - 1))
        cfg.append((0, 0, 0))
        p = lax.pad(z[..., j, :], np.array(0, z.dtype), cfg)
        res = p if res is None else res + p
    return res


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv_transpose(y: Array, k: Array, g: TransposeGeometry) -> Array:
    return _lax_conv_transpose(y, k, g)


_def_bilinear_jvp(_conv_transpose, _lax_conv_transpose, _col2im_kernel_tangent)


def tiles_output(window: Sequence[int], g: TransposeGeometry) -> bool:
    """Whether every output cell of this transposed convolution gets exactly one tap.

    True when the kernel equals the stride, undilated, with no padding (the ``lax``
    padding is then ``k - 1`` on both sides; a high padding cancelled by as much output
    padding counts too).

    Args:
      window: the kernel's spatial size.
      g: the transposed convolution's geometry.

    Returns:
      Whether ``_tiled_conv_transpose`` computes this convolution (with groups 1).
    """
    return all(
        k == s and d == 1 and low == 0 and pad == (k - 1, k - 1)
        for k, s, d, low, pad in zip(
            window, g.strides, g.dilation, g.fwd_low, g.lax_padding, strict=True
        )
    )


def _tiled_conv_transpose(y: Array, k: Array, g: TransposeGeometry) -> Array:
    """``out[n, s*i + a, c] = sum_o y[n, i, o] k[a, c, o]``: one product and a reshape."""
    n = y.ndim - 2
    window, (ci, co) = k.shape[:n], k.shape[n:]
    spatial = y.shape[1:-1]
    taps = math.prod(window)
    kernel = jnp.moveaxis(k, -1, 0).reshape(co, taps * ci)  # (C_out, taps x C_in)
    z = _dot(y.reshape(-1, co), kernel, g.precision)
    z = z.reshape(y.shape[0], *spatial, *window, ci)
    # (N, i_1, ..., i_n, a_1, ..., a_n, C) -> (N, i_1, a_1, ..., i_n, a_n, C)
    order = [0] + [ax for d in range(n) for ax in (1 + d, 1 + n + d)] + [1 + 2 * n]
    out = tuple(i * w for i, w in zip(spatial, window, strict=True))
    return z.transpose(order).reshape(y.shape[0], *out, ci)


def conv_transpose(y: Array, k: Array, g: TransposeGeometry) -> Array:
    """Transposed convolution: one product where it tiles its output, else ``lax``'s.

    With groups 1: under ``'conv_transpose_tiles'`` and a kernel equal to the stride
    (``tiles_output``), ``_tiled_conv_transpose``; else the ``lax`` zero-dilated
    convolution, with the fast kernel derivative under ``'conv_transpose'``. With more
    groups, or integer arrays, the ``lax`` convolution.

    Args:
      y: ``(N, *spatial, C_out)``.
      k: the forward kernel ``(*window, C_in / groups, C_out)``.
      g: the geometry.

    Returns:
      ``(N, *spatial', C_in)``.
    """
    if not jnp.issubdtype(y.dtype, jnp.inexact):
        return _lax_conv_transpose(y, k, g)  # integers: exact sums in their own type
    enabled = enabled_fast_paths() if g.groups == 1 else frozenset()
    if "conv_transpose_tiles" in enabled and tiles_output(k.shape[: y.ndim - 2], g):
        return _tiled_conv_transpose(y, k, g)
    fast_grad = "conv_transpose" in enabled
    out = _conv_transpose(y, k, g) if fast_grad else _lax_conv_transpose(y, k, g)
    return unfused_conv(out, y.shape, k.shape[: y.ndim - 2], any(s > 1 for s in g.strides))


# --------------------------------------------------------------------------- max pool


#: The max-pool tangent of ``max_pool_tangent`` is used from this many channels on
#: (measured: with 6 channels the gather of ``cnn_jax.ops.pool`` was faster).
MAX_POOL_MIN_CHANNELS = 8


def max_pool_fast_applies(g: Any, channels: int) -> bool:
    """Whether ``max_pool_tangent`` applies: non-overlapping undilated windows, enough channels."""
    return (
        tuple(g.strides) == tuple(g.window)
        and all(d == 1 for d in g.dilation)
        and channels >= MAX_POOL_MIN_CHANNELS
    )


def max_pool_tangent(x: Array, t: Array, g: Any) -> Array:
    """The max-pool tangent for non-overlapping windows: each window's tangent at its arg-max.

    The arg-max is PyTorch's (as ``cnn_jax.ops.max_pool_with_indices``): the first
    maximum in window order among the input cells, or, if the maximum is NaN, the last
    NaN. Here ``x`` and ``t`` are padded and reshaped to ``(N, o_1, k_1, ..., C)``
    (``stride == window``, no dilation), the window's taps are visited in order, and
    ``out = sum_j where(tap j is the arg-max, t at tap j, 0)``: one fused loop, whose
    transpose (reverse mode) is one fused loop too, instead of the scatter that
    transposes a gather at the arg-max indices.

    Args:
      x: the input ``(N, *spatial, C)``.
      t: its tangent.
      g: the pooling geometry (``cnn_jax.ops.pool._Geometry``) for which
        ``max_pool_fast_applies``.

    Returns:
      ``(N, *out, C)``.
    """
    n = g.n
    x = lax.stop_gradient(x)
    extent = tuple(o * k for o, k in zip(g.out_shape, g.window))
    crop = (slice(None), *(slice(0, e) for e in extent), slice(None))
    pads = ((0, 0), *g.full_padding, (0, 0))
    lowest = -np.inf if jnp.issubdtype(x.dtype, jnp.inexact) else np.iinfo(x.dtype).min
    xp = jnp.pad(x, pads, constant_values=np.asarray(lowest, x.dtype))[crop]
    tp = jnp.pad(t, pads)[crop]
    split = [x.shape[0]]
    for o, k in zip(g.out_shape, g.window):
        split += [o, k]
    xv = xp.reshape(*split, x.shape[-1])
    tv = tp.reshape(*split, x.shape[-1])
    m = jnp.max(xv, axis=tuple(2 + 2 * d for d in range(n)))
    is_float = jnp.issubdtype(x.dtype, jnp.inexact)
    taps = [g.taps(dim) for dim in range(n)]  # (out_d, window_d) unpadded positions

    def tap_values(tap: tuple[int, ...]) -> tuple[Array, Array, np.ndarray | None]:
        index: list[Any] = [slice(None)]
        valid = np.ones(g.out_shape, bool)
        for dim in range(n):
            index += [slice(None), tap[dim]]
            p = taps[dim][:, tap[dim]]
            shape = [1] * n
            shape[dim] = -1
            valid = valid & ((p >= 0) & (p < g.spatial[dim])).reshape(shape)
        index.append(slice(None))
        v = None if valid.all() else valid[None, ..., None]
        return xv[tuple(index)], tv[tuple(index)], v

    window_taps = list(np.ndindex(*g.window))
    values = [tap_values(tap) for tap in window_taps]
    # The first tap equal to the maximum (padding taps equal it only if it is the
    # lowest value; they are excluded).
    chosen = []
    taken = None
    for xj, _, valid in values:
        eq = xj == m
        if valid is not None:
            eq = eq & valid
        chosen.append(eq if taken is None else eq & ~taken)
        taken = eq if taken is None else taken | eq
    if is_float:
        # A NaN maximum: the last NaN tap.
        later = None
        m_nan = jnp.isnan(m)
        for j in reversed(range(len(values))):
            xj, _, valid = values[j]
            nan = jnp.isnan(xj)
            if valid is not None:
                nan = nan & valid
            pick = nan if later is None else nan & ~later
            later = nan if later is None else later | nan
            chosen[j] = jnp.where(m_nan, pick, chosen[j])
    res = None
    for sel, (_, tj, _) in zip(chosen, values):
        p = jnp.where(sel, tj, jnp.zeros((), t.dtype))
        res = p if res is None else res + p
    return res


# --------------------------------------------------------------------------- batch norm


def _batch_stats(x: Array, fast_variance: bool) -> tuple[Array, Array]:
    """Per-channel mean and biased variance over every axis but the last."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    if fast_variance:
        var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
    else:
        var = jnp.mean(jnp.square(x - mean), axes)
    return mean, var


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def batch_norm_train(
    x: Array, scale: Array | None, bias: Array | None, epsilon: float, fast_variance: bool = False
) -> tuple[Array, Array, Array]:
    """Training-mode batch normalization with a cheaper derivative (fast path ``batch_norm``).

    ``y = (x - mean) * (rsqrt(var + epsilon) * scale) + bias``, the statistics over every
    axis but the last (channels): the values of the plain formula, bit for bit. The
    tangent in ``x`` is written as ``(I - P) D tx`` (module docstring), so reverse mode
    computes the gradients with two reductions of the cotangent shared by ``x``,
    ``scale`` and ``bias``.

    Args:
      x: ``(N, *spatial, C)`` in the compute dtype (float32 or float64).
      scale: ``(C,)``, the same dtype, or ``None`` for no scale.
      bias: ``(C,)``, the same dtype, or ``None`` for no bias.
      epsilon: added to the variance.
      fast_variance: the variance as ``max(E[x²] - E[x]², 0)`` (one pass) instead of
        ``E[(x - E[x])²]``.

    Returns:
      ``(y, mean, var)``: the normalized ``x`` and the batch mean and biased variance
      (differentiable too, for forward mode).
    """
    mean, var = _batch_stats(x, fast_variance)
    mul = lax.rsqrt(var + jnp.asarray(epsilon, x.dtype))
    if scale is not None:
        mul = mul * scale
    y = (x - mean) * mul
    return (y if bias is None else y + bias), mean, var


def _is_zero(t: Any) -> bool:
    return t is None or isinstance(t, SymbolicZero)


def _batch_norm_train_jvp(
    epsilon: float, fast_variance: bool, primals: tuple[Array, Array, Array], tangents: Any
) -> tuple[tuple[Array, Array, Array], tuple[Array, Array, Array]]:
    x, scale, bias = primals
    tx, ts, tb = tangents
    y, mean, var = batch_norm_train(x, scale, bias, epsilon, fast_variance)
    axes = tuple(range(x.ndim - 1))
    r = lax.rsqrt(var + jnp.asarray(epsilon, x.dtype))
    xhat = (x - mean) * r
    parts = []
    t_mean, t_var = jnp.zeros_like(mean), jnp.zeros_like(var)
    if not _is_zero(tx):
        u = tx * (r if scale is None else r * scale)  # D tx
        # (I - P) u, with the minus signs on the per-channel means: the transpose then
        # reduces the cotangent itself (sum(ct), sum(x̂ ct)), as the bias and scale
        # gradients do, and XLA computes each reduction once.
        parts.append(u + (-jnp.mean(u, axes)) + xhat * (-jnp.mean(xhat * u, axes)))
        t_mean = jnp.mean(tx, axes)
        t_var = 2 * jnp.mean(xhat * tx, axes) / r  # d var = 2 mean((x - mean) tx)
    if not _is_zero(ts):
        parts.append(xhat * ts)
    if not _is_zero(tb):
        parts.append(jnp.broadcast_to(tb, y.shape))
    t_y = functools.reduce(jnp.add, parts) if parts else jnp.zeros_like(y)
    return (y, mean, var), (t_y, t_mean, t_var)


batch_norm_train.defjvp(_batch_norm_train_jvp, symbolic_zeros=True)
