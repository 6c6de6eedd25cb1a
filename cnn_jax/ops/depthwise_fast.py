"""Depthwise convolution without a convolution (fast path ``'depthwise'``).

A depthwise convolution (``groups == C_in``, one input channel per group) is a sum over
the window's taps of shifted, per-channel scaled copies of the input: forward pass and
input derivative are fused loops over strided slices. Its kernel gradient is a loop over
chunks of the batch (``depthwise_chunk``) that reads the input and the output's
cotangent once, in cache, for all the taps, instead of once per tap.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops._conv_parts import def_bilinear_jvp, sum_over_taps
from cnn_jax.ops.geometry import Geometry

__all__ = ["DEPTHWISE_CHUNK_BYTES", "depthwise_chunk", "depthwise_conv"]

Array = Any


def _depthwise(x: Array, w: Array, g: Geometry) -> Array:
    """Depthwise convolution as a sum over taps of shifted inputs times per-channel weights."""
    n = x.ndim - 2
    c = x.shape[-1]
    mult = w.shape[-1] // c
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)

    def term(s: Array, t: Any) -> Array:
        k = w[t].reshape(c, mult).astype(acc_dtype)  # (1, C * m) -> (C, m)
        return s[..., None] * k if mult > 1 else s * k[:, 0]

    y = sum_over_taps(x, w.shape[:n], g, term)
    if mult > 1:
        y = y.reshape(*y.shape[:-2], c * mult)
    return y.astype(x.dtype)


#: Bytes of a depthwise convolution's input per step of its kernel derivative's loop
#: (``depthwise_chunk``), chosen by a sweep of 3x3 depthwise kernel gradients
#: (``docs/ENGINEERING.md``, "CPU tuning").
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


def _depthwise_kernel_tangent(x: Array, tw: Array, g: Geometry) -> Array:
    """``_depthwise(x, tw)`` as a loop over chunks of the batch (``depthwise_chunk``).

    Its transpose, the kernel gradient, is then a loop too: each step reads one chunk of
    the input and of the output's cotangent while they are in cache and adds all the
    taps' sums to the kernel's cotangent. Differentiated directly, the sum over taps has
    a transpose of one reduction per tap over the whole batch, each reading the input
    and the cotangent again (or writing each tap's slice out first), several times
    slower on the CPU. The body is rematerialized
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
def depthwise_conv(x: Array, w: Array, g: Geometry) -> Array:
    """A depthwise convolution as a sum over taps, with the fast kernel derivative.

    Args:
      x: ``(N, *spatial, C)``, floating point.
      w: ``(*window, 1, C * m)``.
      g: the geometry (``groups == C``, ``padding`` as explicit zero-padding pairs).

    Returns:
      ``(N, *out, C * m)``, equal to ``lax.conv_general_dilated`` with the same arguments.
    """
    return _depthwise(x, w, g)


def_bilinear_jvp(depthwise_conv, _depthwise, _depthwise_kernel_tangent)
