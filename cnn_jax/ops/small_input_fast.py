"""A convolution with few input channels as broadcast products (fast path ``'small_input'``).

A network's first layer on grey or RGB images has 1-3 input channels; its forward pass
is computed as a sum over the window's taps and the input channels of shifted inputs
times kernel rows (one fused loop, its result stored), which XLA:CPU runs faster than
its convolution. The derivatives are ``lax``'s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.ops._conv_parts import def_bilinear_jvp, lax_conv, sum_over_taps
from cnn_jax.ops.fusion import store
from cnn_jax.ops.geometry import Geometry

__all__ = ["SMALL_INPUT_MAX_CHANNELS", "SMALL_INPUT_MAX_TERMS", "small_input", "small_input_conv"]

Array = Any

#: A dense convolution with at most this many input channels ...
SMALL_INPUT_MAX_CHANNELS = 3
#: ... and at most this many products per output value (taps x input channels) has its
#: forward pass computed as broadcast products (``python -m benchmarks.ops_conv --only
#: "first layers"``; ``docs/ENGINEERING.md``, "CPU tuning").
SMALL_INPUT_MAX_TERMS = 32


def small_input(x_shape: Sequence[int], w_shape: Sequence[int], g: Geometry) -> bool:
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


def _broadcast_products(x: Array, w: Array, g: Geometry) -> Array:
    """A dense convolution: the sum over taps and input channels of shifted inputs x kernel rows."""
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)

    def term(s: Array, t: Any) -> Array:
        k = w[t].astype(acc_dtype)  # (C_in, C_out)
        p = s[..., :1] * k[0]
        for c in range(1, x.shape[-1]):
            p = p + s[..., c : c + 1] * k[c]
        return p

    return sum_over_taps(x, w.shape[: x.ndim - 2], g, term).astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def small_input_conv(x: Array, w: Array, g: Geometry) -> Array:
    """A dense convolution (``small_input``) as broadcast products, with ``lax``'s derivatives.

    Args:
      x: ``(N, *spatial, C_in)``, floating point.
      w: ``(*window, C_in, C_out)``.
      g: the geometry (groups 1, ``padding`` as explicit zero-padding pairs).

    Returns:
      ``(N, *out, C_out)``, equal to ``lax.conv_general_dilated`` with the same arguments.
    """
    # Stored: fused into its consumer (ReLU and a max pool, say) the products are
    # recomputed there, and LeNet-5's inference was slower than with lax.
    return store(_broadcast_products(x, w, g))


# lax's derivatives: differentiating the products gives a kernel gradient of one
# reduction per tap and channel, which made a LeNet-5 training step several times slower.
def_bilinear_jvp(small_input_conv, lax_conv, lax_conv)
