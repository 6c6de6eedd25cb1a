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
transforms cost more than they save (``python -m benchmarks.winograd_cpu`` times both
per VGG-19 layer).

Accuracy: the transforms have entries up to 8 and 1/24, so in float32 the result
differs from the exact convolution by up to about ``2e-5`` of the output's largest
magnitude with 512 channels, more than a direct float32 convolution's deviation (both
tested). 16-bit inputs are computed in float32 and rounded once at the end. Use it
where that is fine (optimizing an image through a fixed network), not where results
must match bit for bit.

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

__all__ = [
    "TILE",
    "winograd_conv3x3",
    "winograd_conv3x3_transformed",
    "winograd_kernel",
    "winograd_transforms",
]

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


def _check_input(x: Any) -> Array:
    check_array_rank(x, "x", 4, "(N, H, W, C)")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`x` must be a floating-point array, got dtype {x.dtype}")
    if min(x.shape[1:3]) < 1:
        raise ValueError(f"`x` must have H, W >= 1, got shape {tuple(x.shape)}")
    return jnp.asarray(x)


def _as_float_kernel(kernel: Any, name: str = "kernel") -> Array:
    kernel = jnp.asarray(kernel)
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
        raise ValueError(f"`{name}` must have shape (3, 3, C_in, C_out), got {kernel.shape}")
    if not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise TypeError(f"`{name}` must be a floating-point array, got dtype {kernel.dtype}")
    return kernel


def _compute_dtype(*dtypes: Any) -> Any:
    """At least float32: in 16-bit floats the transforms' 1/6 and 8 cost ~3 bits more."""
    return jnp.result_type(jnp.float32, *dtypes)


def winograd_kernel(kernel: Array) -> Array:
    """The transformed kernel ``G g G^T`` of every channel pair, ``(36, C_in, C_out)``.

    Args:
      kernel: ``(3, 3, C_in, C_out)`` (HWIO), floating point.

    Returns:
      ``(36, C_in, C_out)``, position ``6 * i + j`` of the 6x6 transformed tile first,
      in float32 for 16-bit kernels (the transform's 1/6 and 1/24 are not exact there)
      and in the kernel's dtype otherwise.

    Raises:
      ValueError: if ``kernel`` is not ``(3, 3, C_in, C_out)``.
      TypeError: if ``kernel`` is not floating point.
    """
    kernel = _as_float_kernel(kernel)
    dt = _compute_dtype(kernel.dtype)
    g = jnp.asarray(_G, dt)
    u = jnp.einsum("ij,jkco,lk->ilco", g, kernel.astype(dt), g, precision=lax.Precision.HIGHEST)
    return u.reshape(_A * _A, *kernel.shape[2:])


def _conv_transformed(x: Array, u: Array) -> Array:
    """The convolution in at least float32 (then cast to ``x.dtype``); shapes checked."""
    out_dtype = x.dtype
    dt = _compute_dtype(x.dtype, u.dtype)
    x, u = x.astype(dt), u.astype(dt)
    n, h, w, c = x.shape
    th, tw = -(-h // TILE), -(-w // TILE)  # tiles per side (the last one padded)
    pad = ((0, 0), (1, TILE * th - h + 3), (1, TILE * tw - w + 3), (0, 0))
    xp = jnp.pad(x, pad).reshape(n, TILE * th + 4, tw + 1, TILE, c)
    # B^T d B in two passes, columns then rows, with the column pass materialized:
    # fused into one pass, every output would re-read up to 16 input pixels.
    cols = lax.optimization_barrier(jnp.stack(_combine(_taps(xp, 2, tw), _BT)))
    cols = cols.reshape(_A, n, th + 1, TILE, tw, c)
    v = jnp.stack(_combine(_taps(cols, 2, th), _BT)).reshape(_A * _A, n * th * tw, c)
    # HIGHEST: on accelerators the default may multiply in bf16/TF32, which the
    # transforms' entries (up to 8 and 1/24) would amplify
    m = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))), precision=lax.Precision.HIGHEST)
    m = m.reshape(_A, _A, n, th, tw, -1)
    # A^T m A, again in two passes; the result is assembled as (n, th, p, tw, q, C_out).
    half = lax.optimization_barrier(jnp.stack(_combine([m[:, j] for j in range(_A)], _AT)))
    rows = [jnp.stack(_combine([half[q, i] for i in range(_A)], _AT), 2) for q in range(TILE)]
    y = jnp.stack(rows, 4).reshape(n, TILE * th, TILE * tw, -1)
    return y[:, :h, :w].astype(out_dtype)


def winograd_conv3x3_transformed(x: Array, u: Array) -> Array:
    """The convolution of ``x`` with a kernel already transformed by :func:`winograd_kernel`.

    For loops that convolve with a fixed kernel many times (the transform is then done
    once, outside). Differentiable by JAX's rules for its parts (slices, sums, a
    batched matrix product), in both modes; :func:`winograd_conv3x3` has a faster
    input gradient.

    Args:
      x: ``(N, H, W, C_in)`` floating point, ``H, W >= 1``.
      u: ``winograd_kernel(kernel)``, ``(36, C_in, C_out)`` floating point.

    Returns:
      ``(N, H, W, C_out)`` in ``x``'s dtype: the 3x3 stride-1 ``'SAME'`` convolution,
      computed in at least float32 (16-bit inputs are not transformed in 16 bits).

    Raises:
      ValueError, TypeError: for a bad rank, dtype or shape, naming the argument.
    """
    x = _check_input(x)
    u = jnp.asarray(u)
    if u.ndim != 3 or u.shape[0] != _A * _A or u.shape[1] != x.shape[-1]:
        raise ValueError(
            f"`u` must be winograd_kernel(kernel) of shape (36, {x.shape[-1]}, C_out) for "
            f"`x` of shape {tuple(x.shape)}, got {tuple(u.shape)}"
        )
    if not jnp.issubdtype(u.dtype, jnp.floating):
        raise TypeError(f"`u` must be a floating-point array, got dtype {u.dtype}")
    return _conv_transformed(x, u)


def winograd_transforms(kernel: Array) -> tuple[Array, Array]:
    """``(u, u_t)``: the transformed kernel and that of its input-gradient kernel.

    ``u_t`` transforms ``kernel`` flipped in space with its channels swapped
    (``(3, 3, C_out, C_in)``), the kernel whose convolution with an output gradient is
    the input gradient. Compute them once for a fixed kernel and pass them to
    :func:`winograd_conv3x3` as ``transforms``.

    Raises:
      ValueError, TypeError: as :func:`winograd_kernel`.
    """
    kernel = _as_float_kernel(kernel)
    return winograd_kernel(kernel), winograd_kernel(jnp.flip(kernel, (0, 1)).swapaxes(2, 3))


@jax.custom_vjp
def _winograd_conv(x: Array, kernel: Array, u: Array, u_t: Array) -> Array:
    return _conv_transformed(x, u)


def _fwd(x: Array, kernel: Array, u: Array, u_t: Array) -> tuple[Array, tuple]:
    return _conv_transformed(x, u), (x, kernel, u, u_t)


def _bwd(res: tuple, g: Array) -> tuple[Array, Array, Array, Array]:
    # The value depends on x and kernel only (u, u_t are functions of kernel): the
    # transforms' cotangents are zero and the kernel's is lax's (removed by XLA where
    # unused). The input gradient is a 3x3 'SAME' convolution of g with the flipped,
    # channel-swapped kernel: Winograd again, with u_t.
    x, kernel, u, u_t = res
    dx = _conv_transformed(g, u_t)
    _, kernel_vjp = jax.vjp(
        lambda k: lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN),
        kernel,
    )
    (dk,) = kernel_vjp(g)
    return dx.astype(x.dtype), dk, jnp.zeros_like(u), jnp.zeros_like(u_t)


_winograd_conv.defvjp(_fwd, _bwd)


def winograd_conv3x3(
    x: Array, kernel: Array, transforms: tuple[Array, Array] | None = None
) -> Array:
    """A 3x3, stride-1, ``'SAME'`` convolution by Winograd's F(4x4, 3x3).

    The same function as ``lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`` up to float rounding (see the module
    docstring), computed in at least float32 and returned in ``x``'s dtype.
    Reverse-mode differentiable (a ``jax.custom_vjp``: ``jax.jvp`` raises JAX's
    ``TypeError``): the input gradient is itself a Winograd convolution (with the
    flipped, channel-swapped kernel); the kernel gradient is ``lax``'s.

    Args:
      x: ``(N, H, W, C_in)`` floating point, ``H, W >= 1``.
      kernel: ``(3, 3, C_in, C_out)`` of ``x``'s dtype (as ``lax`` requires).
      transforms: ``winograd_transforms(kernel)``, computed once outside a loop that
        convolves with a fixed kernel; ``None``: computed here. They must be those of
        ``kernel`` (their cotangents are zero; the kernel's is ``lax``'s).

    Returns:
      ``(N, H, W, C_out)``.

    Raises:
      ValueError, TypeError: for a bad rank, dtype or shape, naming the argument.
    """
    x = _check_input(x)
    kernel = _as_float_kernel(kernel)
    if kernel.shape[2] != x.shape[-1]:
        raise ValueError(
            f"`kernel` has {kernel.shape[2]} input channels but `x` has {x.shape[-1]} "
            f"(kernel shape {kernel.shape}, x shape {tuple(x.shape)})"
        )
    if kernel.dtype != x.dtype:
        raise TypeError(
            f"`kernel` (dtype {kernel.dtype}) and `x` (dtype {x.dtype}) must have one dtype"
        )
    u, u_t = winograd_transforms(kernel) if transforms is None else transforms
    c_in, c_out = kernel.shape[2:]
    if tuple(np.shape(u)) != (_A * _A, c_in, c_out) or tuple(np.shape(u_t)) != (
        _A * _A,
        c_out,
        c_in,
    ):
        raise ValueError(
            f"`transforms` must be winograd_transforms(kernel) of shapes (36, {c_in}, "
            f"{c_out}) and (36, {c_out}, {c_in}), got {np.shape(u)} and {np.shape(u_t)}"
        )
    return _winograd_conv(x, kernel, u, u_t)
