"""Dense convolutions whose derivatives stay fast inside a loop body on XLA:CPU.

Differentiated automatically, the kernel gradient of ``lax.conv_general_dilated`` is a
convolution of the input with the output gradient whose dimension numbers put the
batch in the feature position (``f01b_i01o->01bf`` for 2-D). Outside a loop, XLA:CPU
rewrites it into its canonical ``NHWC x HWIO -> NHWC`` form around transposes and runs
its Eigen convolution. Inside a ``while`` loop (``lax.scan``, ``nn.scan``: the
scanned stages of ``cnn_jax.models.PreActResNetCifar``) it does not, and computes the
convolution with its generic loop emitter, far slower (measurements in
docs/ENGINEERING.md, "Convolutions inside loops").

Fast path ``'loop_conv'`` (``cnn_jax.ops.fast_paths``), in effect only for ops traced
inside :func:`cnn_jax.ops.fast_paths.loop_body`: a ``jax.custom_vjp`` whose backward
pass is written in the canonical form itself. The kernel gradient is the input with
batch and channels swapped, ``(C_in, *spatial, N)``, convolved with the output gradient
as an ``(*out, N, C_out)`` kernel (the forward strides become that kernel's dilation,
the forward kernel dilation the strides), then ``(C_in, *window, C_out)`` moved back
to ``(*window, C_in, C_out)``; at stride 1 the input gradient is the output gradient
convolved with the kernel flipped in space and with its channels swapped, an explicit
array (as ``cnn_jax.style.fast_vgg`` does for VGG-19); strided, it is ``conv_fast``'s
col2im rule, and with a padding wider than the dilated kernel's reach ``lax``'s own. The
same sums as ``lax``'s derivatives, for floating-point and complex arrays. Reverse mode
to any order and forward-over-reverse (Hessian-vector products) work: second
derivatives differentiate the backward pass's convolutions with ``lax``'s rules (not
canonical again, so slow inside a loop). Plain forward mode does not
(``jax.custom_vjp``), which is why the path is confined to loop bodies.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
from jax import lax

from cnn_jax.ops._conv_parts import lax_conv, tangent_input
from cnn_jax.ops.geometry import Geometry, dimension_numbers

__all__ = ["canonical_input_grad", "canonical_kernel_grad", "loop_conv"]

Array = Any


def canonical_kernel_grad(x: Array, dy: Array, window: Sequence[int], g: Geometry) -> Array:
    """The kernel gradient of ``lax_conv(x, w, g)`` for the output gradient ``dy``.

    Computed as one canonical (channels-last) convolution over the batch: ``dk[t, i, o] =
    sum_{n, y} x_padded[n, s*y + d*t, i] * dy[n, y, o]``.

    Args:
      x: the input ``(N, *spatial, C_in)``.
      dy: the output gradient ``(N, *out, C_out)``.
      window: the kernel's spatial shape.
      g: the geometry (``groups == 1``).

    Returns:
      ``(*window, C_in, C_out)`` in ``dy``'s dtype.
    """
    n = x.ndim - 2
    lhs = jax.numpy.moveaxis(x, (0, n + 1), (n + 1, 0))  # (C_in, *spatial, N)
    rhs = jax.numpy.moveaxis(dy, 0, n)  # (*out, N, C_out)
    out = lax.conv_general_dilated(
        lhs,
        rhs.astype(lhs.dtype),
        window_strides=g.dilation,
        padding=g.padding,
        rhs_dilation=g.strides,
        dimension_numbers=dimension_numbers(n),
        precision=g.precision,
    )  # (C_in, >= window, C_out): a stride leaves rows past the last tap
    out = out[(slice(None), *(slice(0, k) for k in window), slice(None))]
    return jax.numpy.moveaxis(out, 0, n).astype(dy.dtype)


def canonical_input_grad(dy: Array, w: Array, spatial: Sequence[int], g: Geometry) -> Array:
    """The input gradient of a stride-1 ``lax_conv(x, w, g)`` for the output gradient ``dy``.

    Computed as one canonical convolution of ``dy`` with the kernel flipped in space and
    its channels swapped (an explicit array, ``(*window, C_out, C_in)``): ``dx[n, p, i]
    = sum_{t, o} dy[n, p + lo - d*t, o] * w[t, i, o]``.

    Args:
      dy: the output gradient ``(N, *out, C_out)``.
      w: the kernel ``(*window, C_in, C_out)``.
      spatial: the input's spatial shape.
      g: the geometry (stride 1, ``groups == 1``, padding at most ``d * (k - 1)`` a side).

    Returns:
      ``(N, *spatial, C_in)``.
    """
    n = dy.ndim - 2
    window = w.shape[:n]
    flipped = jax.numpy.swapaxes(jax.numpy.flip(w, tuple(range(n))), n, n + 1)
    padding = tuple(
        (d * (k - 1) - lo, i - o + lo)
        for (lo, _), d, k, i, o in zip(g.padding, g.dilation, window, spatial, dy.shape[1:-1])
    )
    return lax.conv_general_dilated(
        dy,
        flipped.astype(dy.dtype),
        window_strides=(1,) * n,
        padding=padding,
        rhs_dilation=g.dilation,
        dimension_numbers=dimension_numbers(n),
        precision=g.precision,
    )


def _input_grad(x: Array, w: Array, dy: Array, g: Geometry) -> Array:
    """The input gradient: canonical at stride 1 with padding within the kernel's reach.

    Otherwise ``conv_fast``'s input rule (col2im when strided, ``lax``'s at stride 1).
    """
    n = x.ndim - 2
    reach = [d * (k - 1) for d, k in zip(g.dilation, w.shape[:n])]
    if all(s == 1 for s in g.strides) and all(max(p) <= r for p, r in zip(g.padding, reach)):
        return canonical_input_grad(dy, w, x.shape[1:-1], g)
    return jax.vjp(lambda t: tangent_input(t, w, g), x)[1](dy)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def loop_conv(x: Array, w: Array, g: Geometry) -> Array:
    """``lax_conv(x, w, g)`` (dense: ``g.groups == 1``) with loop-safe derivatives.

    Reverse mode only (a ``jax.custom_vjp``; its backward pass is plain convolutions, so
    reverse-over-reverse and forward-over-reverse work); ``jax.jvp`` raises a
    ``TypeError`` (``loop_body`` adds the ways out: trace outside ``loop_body``, or
    without the ``'loop_conv'`` fast path, for forward mode).

    Args:
      x: ``(N, *spatial, C_in)``, floating point or complex.
      w: ``(*window, C_in, C_out)``.
      g: the geometry (``padding`` as explicit zero-padding pairs).

    Returns:
      ``(N, *out, C_out)``, equal to ``lax.conv_general_dilated``.
    """
    return lax_conv(x, w, g)


def _fwd(x: Array, w: Array, g: Geometry) -> tuple[Array, tuple[Array, Array]]:
    return lax_conv(x, w, g), (x, w)


def _bwd(g: Geometry, res: tuple[Array, Array], dy: Array) -> tuple[Array, Array]:
    x, w = res
    dw = canonical_kernel_grad(x, dy, w.shape[: x.ndim - 2], g)
    return _input_grad(x, w, dy, g).astype(x.dtype), dw.astype(w.dtype)


loop_conv.defvjp(_fwd, _bwd)
