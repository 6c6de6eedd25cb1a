"""3x3 convolution by Winograd's minimal filtering, F(4x4, 3x3) (Lavin & Gray 2016).

A stride-1, ``'SAME'`` (padding 1) 3x3 convolution, ``NHWC x HWIO -> NHWC``, computed
on 6x6 input tiles that overlap by two pixels: each tile ``d`` is transformed to
``B^T d B``, each kernel slice ``g`` to ``G g G^T``, the 36 transformed positions are
36 independent matrix products over the channels (``(tiles, C_in) @ (C_in, C_out)``),
and ``A^T m A`` turns each product back into a 4x4 output tile. A direct convolution
makes 9 multiply-adds per output pixel and channel pair; this makes 36 per 16 pixels,
2.25 per pixel: 4x fewer, for the price of the transforms (elementwise sums over
slices, memory-bound). It wins where the products dominate: many channels on small
feature maps (VGG's 256 and 512 channel layers); with 64 channels on large maps the
transforms cost more than they save. ``python -m benchmarks.winograd_cpu`` measures
both per VGG-19 layer; ``docs/RESULTS.md`` ("Neural style transfer") has the table that
chose where :mod:`cnn_jax.style` uses it.

Accuracy: the transforms have entries up to 8 and 1/24, so in float32 the result
differs from a direct convolution by about ``1e-5`` of the output's largest magnitude
(tested), against about ``1e-7`` for a direct convolution in another summation order.
Use it where that is fine (optimizing an image through a fixed network), not where
results must match bit for bit.

The points are Lavin & Gray's (0, 1, -1, 2, -2, infinity); the matrices below are
theirs, checked by the tests against a direct convolution in float64.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops._validate import check_array_rank

__all__ = ["TILE", "winograd_conv3x3", "winograd_conv3x3_transformed", "winograd_kernel"]

Array = Any

#: Output tile side ``m`` of F(m x m, 3x3); input tiles are ``m + 2`` pixels wide.
TILE = 4
_A = TILE + 2  # input tile side
_BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    np.float64,
)
_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    np.float64,
)
_AT = np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    np.float64,
)
_DN = ("NHWC", "HWIO", "NHWC")


def _combine(terms: list[Array], matrix: np.ndarray) -> list[Array]:
    """``[sum_j matrix[i, j] * terms[j] for i]`` with the zero and unit entries skipped."""
    out = []
    for row in matrix:
        acc = None
        for coef, term in zip(row, terms):
            if coef == 0:
                continue
            t = term if coef == 1 else (-term if coef == -1 else float(coef) * term)
            acc = t if acc is None else acc + t
        out.append(acc)
    return out


def _taps(blocked: Array, axis: int, tiles: int) -> list[Array]:
    """The ``_A`` input rows of every tile along ``axis``.

    ``blocked`` has that spatial axis split into ``(tiles + 1, TILE)`` at ``axis`` and
    ``axis + 1``; tap ``r`` of tile ``t`` is pixel ``TILE * t + r``.
    """
    out = []
    for r in range(_A):
        block, offset = divmod(r, TILE)
        part = lax.slice_in_dim(blocked, block, block + tiles, axis=axis)
        out.append(lax.index_in_dim(part, offset, axis=axis + 1, keepdims=False))
    return out


def _check_input(x: Any) -> None:
    check_array_rank(x, "x", 4, "(N, H, W, C)")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"`x` must be a floating-point array, got dtype {jnp.result_type(x)}")


def _check_kernel(kernel: Any, channels: int) -> None:
    shape = tuple(np.shape(kernel))
    if len(shape) != 4 or shape[:2] != (3, 3):
        raise ValueError(f"`kernel` must have shape (3, 3, C_in, C_out), got {shape}")
    if shape[2] != channels:
        raise ValueError(
            f"`kernel` has {shape[2]} input channels but `x` has {channels} (shape {shape})"
        )


def winograd_kernel(kernel: Array) -> Array:
    """The transformed kernel ``G g G^T`` of every channel pair, ``(36, C_in, C_out)``.

    Args:
      kernel: ``(3, 3, C_in, C_out)`` (HWIO).

    Returns:
      ``(36, C_in, C_out)`` in the kernel's dtype; position ``6 * i + j`` of the 6x6
      transformed tile first.

    Raises:
      ValueError: if ``kernel`` is not ``(3, 3, C_in, C_out)``.
    """
    shape = tuple(np.shape(kernel))
    if len(shape) != 4 or shape[:2] != (3, 3):
        raise ValueError(f"`kernel` must have shape (3, 3, C_in, C_out), got {shape}")
    kernel = jnp.asarray(kernel)
    g = jnp.asarray(_G, kernel.dtype)
    u = jnp.einsum("ij,jkco,lk->ilco", g, kernel, g, precision=lax.Precision.HIGHEST)
    return u.reshape(_A * _A, shape[2], shape[3])


def _conv_transformed(x: Array, u: Array) -> Array:
    n, h, w, c = x.shape
    th, tw = -(-h // TILE), -(-w // TILE)  # tiles per side (the last one padded)
    pad = ((0, 0), (1, TILE * th - h + 3), (1, TILE * tw - w + 3), (0, 0))
    xp = jnp.pad(x, pad).reshape(n, TILE * th + 4, tw + 1, TILE, c)
    # B^T d B in two passes, columns then rows, with the column pass materialized:
    # fused into one pass, every output would re-read up to 16 input pixels.
    cols = lax.optimization_barrier(jnp.stack(_combine(_taps(xp, 2, tw), _BT)))
    cols = cols.reshape(_A, n, th + 1, TILE, tw, c)
    v = jnp.stack(_combine(_taps(cols, 2, th), _BT)).reshape(_A * _A, n * th * tw, c)
    m = lax.dot_general(v, u.astype(v.dtype), (((2,), (1,)), ((0,), (0,))))
    m = m.reshape(_A, _A, n, th, tw, -1)
    # A^T m A, again in two passes; the result is assembled as (n, th, p, tw, q, C_out).
    half = lax.optimization_barrier(jnp.stack(_combine([m[:, j] for j in range(_A)], _AT)))
    rows = [jnp.stack(_combine([half[q, i] for i in range(_A)], _AT), 2) for q in range(TILE)]
    y = jnp.stack(rows, 4).reshape(n, TILE * th, TILE * tw, -1)
    return y[:, :h, :w]


def winograd_conv3x3_transformed(x: Array, u: Array) -> Array:
    """The convolution of ``x`` with a kernel already transformed by :func:`winograd_kernel`.

    For loops that convolve with a fixed kernel many times (the transform is then done
    once, outside). Differentiable by JAX's rules for its parts (slices, sums, a
    batched matrix product); :func:`winograd_conv3x3` has a faster input gradient.

    Args:
      x: ``(N, H, W, C_in)``, any ``H, W >= 1``.
      u: ``winograd_kernel(kernel)``, ``(36, C_in, C_out)``.

    Returns:
      ``(N, H, W, C_out)``: the 3x3 stride-1 ``'SAME'`` convolution.

    Raises:
      ValueError, TypeError: for a bad rank, dtype or shape, naming the argument.
    """
    _check_input(x)
    shape = tuple(np.shape(u))
    if len(shape) != 3 or shape[0] != _A * _A or shape[1] != x.shape[-1]:
        raise ValueError(
            f"`u` must be winograd_kernel(kernel) of shape (36, {x.shape[-1]}, C_out) for "
            f"`x` of shape {tuple(x.shape)}, got {shape}"
        )
    return _conv_transformed(jnp.asarray(x), jnp.asarray(u))


@jax.custom_vjp
def _winograd_conv(x: Array, kernel: Array) -> Array:
    return _conv_transformed(x, winograd_kernel(kernel))


def _fwd(x: Array, kernel: Array) -> tuple[Array, tuple[Array, Array]]:
    return _winograd_conv(x, kernel), (x, kernel)


def _bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    x, kernel = res
    # the input gradient is the convolution of g with the kernel flipped in space and
    # its channels swapped: another 3x3 'SAME' convolution, so Winograd again
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _conv_transformed(g, winograd_kernel(flipped))
    _, kernel_vjp = jax.vjp(
        lambda k: lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN),
        kernel,
    )
    (dk,) = kernel_vjp(g)
    return dx.astype(x.dtype), dk


_winograd_conv.defvjp(_fwd, _bwd)


def winograd_conv3x3(x: Array, kernel: Array) -> Array:
    """A 3x3, stride-1, ``'SAME'`` convolution by Winograd's F(4x4, 3x3).

    The same function as ``lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`` up to float rounding (see the module
    docstring). Reverse-mode differentiable (a ``jax.custom_vjp``, so not forward
    mode): the input gradient is itself a Winograd convolution (with the flipped,
    channel-swapped kernel); the kernel gradient is ``lax``'s.

    Args:
      x: ``(N, H, W, C_in)`` floating point, any ``H, W >= 1``.
      kernel: ``(3, 3, C_in, C_out)``.

    Returns:
      ``(N, H, W, C_out)``.

    Raises:
      ValueError, TypeError: for a bad rank, dtype or shape, naming the argument.
    """
    _check_input(x)
    _check_kernel(kernel, x.shape[-1])
    x = jnp.asarray(x)
    return _winograd_conv(x, jnp.asarray(kernel, x.dtype))
