"""Fusion boundaries around convolutions: a stored input, and an output kept apart.

Two fast paths (``cnn_jax.ops.fast_paths``) that change no value, bit for bit, only
what XLA:CPU fuses:

* ``'materialize'`` (``keep_input``): under differentiation, a convolution's input is
  computed into a buffer of its own, so that the kernel gradient reads it instead of
  recomputing the elementwise chain that produced it;
* ``'unfused_conv'`` (``unfused_conv``): in inference, a float32 convolution's output
  passes through a no-op that YNNPACK does not support, so that XLA's own convolution
  computes it instead of a YNNPACK fusion grown from its consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops.fast_paths import enabled_fast_paths

__all__ = ["YNN_MIN_CHANNELS", "keep_input", "store", "unfused_conv", "ynn_could_take"]

Array = Any


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
def store(x: Array) -> Array:
    """``x`` computed into a buffer of its own (``_materialized``), with the identity derivative.

    Args:
      x: an array.

    Returns:
      ``x``, the same values bit for bit.
    """
    return _materialized(x)


@_stored.defjvp
def _stored_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    return store(primals[0]), tangents[0]


@store.defjvp
def _store_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    # The loop is never differentiated (reverse mode cannot transpose a while loop).
    return store(primals[0]), tangents[0]


def keep_input(x: Array) -> Array:
    """A convolution's input, kept in memory for its derivatives (fast path ``'materialize'``).

    XLA:CPU fuses the elementwise chain that produces an activation (batch norm, ReLU,
    residual sums, several blocks deep) into each of its consumers and recomputes it
    there. For the layout transpose in front of a convolution's kernel gradient that
    recomputation is much slower than reading the stored activation
    (``docs/ENGINEERING.md``, "CPU tuning"). Under differentiation this returns ``x``
    from a fusion boundary, so that the forward convolution and its derivatives read one
    stored buffer; without differentiation it returns ``x`` unchanged (no cost in
    inference).

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
    ResNet-20 and of the Xception block), are then YNNPACK's, which is slower than XLA's
    own (Eigen) convolution there (``docs/ENGINEERING.md``, "CPU tuning"). Under
    differentiation the output has more users (the saved activations), so nothing is
    fused and nothing is added; without differentiation this returns ``y`` through
    ``_unfused``'s boundary.

    The boundary is fused into an elementwise consumer (batch norm, an activation) at no
    cost; where the output goes straight into a max pool, another convolution, a
    product or the program's result, it is one more pass over the output. So it is added
    only where YNNPACK could take the convolution (``ynn_could_take``), and only for
    float32. YNNPACK also takes float64 and int8 convolutions, which are left alone; it
    takes no bfloat16 ones, for which reduce-precision would not be exact on XLA:CPU
    anyway (it quiets signalling NaNs).

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
