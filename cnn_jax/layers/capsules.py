r"""Capsule layers with dynamic routing (Sabour, Frosst & Hinton 2017).

A capsule is a vector whose length is the probability that an entity is present and
whose direction encodes its pose. The pieces, as the paper (and the lecture) write them:

* :func:`squash`: :math:`v = \frac{\|s\|^2}{1 + \|s\|^2} \frac{s}{\|s\|}`, with the norm
  taken as :math:`\sqrt{\|s\|^2 + \epsilon}` so that value and gradient are finite (zero)
  at :math:`s = 0`; lengths land in ``[0, 1)``.
* :class:`PrimaryCaps`: a convolution producing ``num_maps`` maps of ``caps_dim``-D
  capsules (the paper: 32 maps of 8-D capsules, 9x9 kernels, stride 2), squashed.
* :class:`RoutingCaps`: prediction vectors :math:`\hat u_{j|i} = W_{ij} u_i` with one
  matrix per pair (input capsule ``i``, output capsule ``j``), then
  :func:`dynamic_routing`.
* :func:`dynamic_routing`: routing by agreement. :math:`b_{ij} = 0`; ``r`` times:
  :math:`c_i = \mathrm{softmax}_j(b_i)`, :math:`s_j = \sum_i c_{ij} \hat u_{j|i}`,
  :math:`v_j = \mathrm{squash}(s_j)`, :math:`b_{ij} \mathrel{+}= \hat u_{j|i} \cdot v_j`.

Gradients through routing: by default (``route_gradients=False``) the coupling
coefficients are constants for back-propagation: the iterations before the last see
``stop_gradient(u_hat)``, and the last one's ``c`` comes from them, so the gradient
reaches ``u_hat`` only through :math:`s_j = \sum_i c_{ij} \hat u_{j|i}` of the last
iteration (what the common reference implementations do). ``route_gradients=True``
differentiates through every iteration, including the softmax of the agreements.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops._validate import is_int

__all__ = [
    "PrimaryCaps",
    "RoutingCaps",
    "capsule_lengths",
    "dynamic_routing",
    "squash",
    "strided_valid_conv",
]

Array = Any


def squash(s: Array, axis: int = -1, eps: float = 1e-7) -> Array:
    r"""The capsule non-linearity :math:`\frac{\|s\|^2}{1+\|s\|^2}\frac{s}{\|s\|}`.

    Keeps the direction of ``s`` and maps its length into ``[0, 1)``: short vectors
    shrink to almost zero, long ones to just below 1. The norm in the denominator is
    :math:`\sqrt{\|s\|^2 + \epsilon}`, so the value and the gradient are finite (both
    zero) at the zero vector.

    Args:
      s: vectors along ``axis``.
      axis: the capsule dimension.
      eps: added under the square root.

    Returns:
      An array of the shape and dtype of ``s``.
    """
    sq = jnp.sum(jnp.square(s), axis=axis, keepdims=True)
    scale = sq / (1.0 + sq) * lax.rsqrt(sq + eps)
    return (scale * s).astype(s.dtype)


def capsule_lengths(v: Array, eps: float = 1e-7) -> Array:
    """The lengths of capsules ``(..., dim) -> (...)``, with a gradient finite at 0.

    Args:
      v: capsules on the last axis.
      eps: added under the square root.

    Returns:
      ``sqrt(sum(v**2, -1) + eps)``.
    """
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=-1) + eps)


def _check_routing_args(u_hat: Any, num_iterations: Any) -> None:
    shape = getattr(u_hat, "shape", None)
    if shape is None or len(shape) != 4:
        got = f"shape {tuple(shape)}" if shape is not None else repr(u_hat)
        raise ValueError(f"`u_hat` must have shape (batch, in_caps, out_caps, out_dim), got {got}")
    if not is_int(num_iterations) or num_iterations < 1:
        raise ValueError(f"`num_iterations` (={num_iterations!r}) must be an int >= 1")


def _agreement_step(b: Array, u: Array) -> tuple[Array, Array, Array]:
    """One routing iteration: ``(c, v, b + u . v)`` from logits ``b`` and predictions ``u``.

    Output-capsule-major layout: ``u`` is ``(batch, out_caps, in_caps, dim)`` and ``b``
    ``(batch, out_caps, in_caps)``, so both einsums are batched matrix-vector products
    over contiguous rows (about 4x faster on XLA:CPU than the ``(batch, in, out, dim)``
    layout; docs/ENGINEERING.md, "CPU tuning").
    """
    c = jax.nn.softmax(b, axis=1)  # over the output capsules j
    s = jnp.einsum("bji,bjid->bjd", c, u)
    v = squash(s)
    return c, v, b + jnp.einsum("bjid,bjd->bji", u, v)


def dynamic_routing(
    u_hat: Array,
    num_iterations: int = 3,
    *,
    route_gradients: bool = False,
    return_couplings: bool = False,
) -> Array | tuple[Array, Array]:
    r"""Routing by agreement (Sabour et al. 2017, procedure 1).

    :math:`b_{ij} = 0`; ``num_iterations`` times: :math:`c_i = \mathrm{softmax}_j(b_i)`,
    :math:`s_j = \sum_i c_{ij} \hat u_{j|i}`, :math:`v_j = \mathrm{squash}(s_j)`,
    :math:`b_{ij} \mathrel{+}= \hat u_{j|i} \cdot v_j`. The iterations run in one
    ``lax.scan`` (two einsums each), so the whole routing compiles to one loop.

    Args:
      u_hat: prediction vectors ``(batch, in_caps, out_caps, out_dim)``.
      num_iterations: ``r >= 1`` (the paper uses 3).
      route_gradients: differentiate through the coupling coefficients of every
        iteration; by default (False) they are constants for back-propagation, as in the
        reference implementations (see the module docstring).
      return_couplings: also return the coupling coefficients of every iteration.

    Returns:
      ``v`` of shape ``(batch, out_caps, out_dim)``, and with ``return_couplings`` the
      couplings ``c`` of shape ``(num_iterations, batch, in_caps, out_caps)`` (iteration
      ``t``'s ``softmax_j(b)``, the one used to form its ``s``).

    Raises:
      ValueError: naming ``u_hat`` for an array that is not 4-D, and
        ``num_iterations`` for a value that is not an int >= 1.
    """
    _check_routing_args(u_hat, num_iterations)
    out = _routing(
        jnp.swapaxes(u_hat, 1, 2), int(num_iterations), bool(route_gradients), return_couplings
    )
    if not return_couplings:
        return out
    return out[0], jnp.swapaxes(out[1], 2, 3)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _routing(
    u_hat: Array, num_iterations: int, route_gradients: bool, return_couplings: bool
) -> Any:
    """Routing on ``u_hat`` of shape ``(batch, out_caps, in_caps, dim)``; couplings alike."""
    n, j, i, _ = u_hat.shape
    b0 = jnp.zeros((n, j, i), jnp.promote_types(u_hat.dtype, jnp.float32))
    u_iter = u_hat if route_gradients else lax.stop_gradient(u_hat)

    def body(b: Array, _: Any) -> tuple[Array, Array]:
        c, _, b_new = _agreement_step(b, u_iter)
        return b_new, c

    # The first r - 1 iterations only update the logits; the last forms v from u_hat.
    b, cs = lax.scan(body, b0, None, length=num_iterations - 1)
    c, v, _ = _agreement_step(b, u_hat)
    v = v.astype(u_hat.dtype)
    if not return_couplings:
        return v
    return v, jnp.concatenate([cs, c[None]], axis=0)


_DN = ("NHWC", "HWIO", "NHWC")


def strided_valid_conv(x: Array, kernel: Array, stride: int) -> Array:
    """A valid, strided 2-D convolution whose input gradient is one matrix product.

    The value is ``lax.conv_general_dilated`` with ``window_strides=(s, s)`` and
    ``'VALID'`` padding; so is the kernel gradient. The input gradient, which XLA:CPU
    would compute as an input-dilated convolution (slow for PrimaryCaps' shapes) or,
    on space-to-depth input, as a stride-1 "full" convolution over mostly zero
    padding (2.8x the useful products for PrimaryCaps), is computed as what it is:
    every output position's cotangent times the kernel
    (``(N*H'*W', C_out) @ (C_out, k*k*C)``, the useful products only), then each of
    the ``k*k`` taps added into its place (:func:`_col2im`; the timings are in
    docs/RESULTS.md, "Capsule networks"). Differentiable in reverse mode (the
    derivative is a ``custom_vjp`` written in differentiable operations), not in
    forward mode.

    Args:
      x: ``(N, H, W, C)``.
      kernel: ``(k, k, C, C_out)``.
      stride: ``s >= 1``.

    Returns:
      ``(N, (H - k) // s + 1, (W - k) // s + 1, C_out)``.
    """
    if stride == 1:
        return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DN)
    return _strided_conv(x, kernel, int(stride))


def _lax_strided(x: Array, kernel: Array, stride: int) -> Array:
    return lax.conv_general_dilated(x, kernel, (stride, stride), "VALID", dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _strided_conv(x: Array, kernel: Array, stride: int) -> Array:
    return _lax_strided(x, kernel, stride)


def _strided_conv_fwd(x: Array, kernel: Array, stride: int) -> tuple[Array, tuple[Array, Array]]:
    return _lax_strided(x, kernel, stride), (x, kernel)


def _strided_conv_bwd(stride: int, res: tuple[Array, Array], dy: Array) -> tuple[Array, Array]:
    x, kernel = res
    dk = jax.vjp(lambda k: _lax_strided(x, k, stride), kernel)[1](dy)[0]
    n, oh, ow, c_out = dy.shape
    k, kw, c, _ = kernel.shape
    cols = jnp.dot(dy.reshape(-1, c_out), kernel.reshape(k * kw * c, c_out).T)
    dx = _col2im(cols.reshape(n, oh, ow, k, kw, c), x.shape[1], x.shape[2], stride)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def _col2im(cols: Array, h: int, w: int, stride: int) -> Array:
    """``dx[n, s*i + a, s*j + b] += cols[n, i, j, a, b]``: ``(N, H', W', k, k, C) -> (N, H, W, C)``.

    The taps of one phase ``(a % s, b % s)`` land on one ``s``-times subsampled plane
    at offsets ``(a // s, b // s)``; the ``s * s`` planes are then interleaved.
    """
    n, oh, ow, kh, kw, c = cols.shape
    s = stride
    ph, pw = oh + -(-kh // s) - 1, ow + -(-kw // s) - 1
    planes = [[jnp.zeros((n, ph, pw, c), cols.dtype) for _ in range(s)] for _ in range(s)]
    for a in range(kh):
        for b in range(kw):
            i, j = a // s, b // s
            plane = planes[a % s][b % s]
            planes[a % s][b % s] = plane.at[:, i : i + oh, j : j + ow].add(cols[:, :, :, a, b])
    x = jnp.stack([jnp.stack(row, axis=3) for row in planes], axis=2)  # (n, ph, s, pw, s, c)
    x = x.reshape(n, ph * s, pw * s, c)[:, :h, :w]
    return jnp.pad(x, ((0, 0), (0, h - x.shape[1]), (0, w - x.shape[2]), (0, 0)))


class PrimaryCaps(nn.Module):
    """Primary capsules: a convolution whose channels are ``num_maps`` x ``caps_dim``.

    The paper's layer: 32 maps of 8-D capsules from a 9x9, stride-2 valid convolution
    (on MNIST's 20x20x256 Conv1 output: 6x6x32 = 1152 capsules), each squashed. The
    parameters are a ``kernel`` ``(k, k, C_in, num_maps * caps_dim)`` (HWIO) and a
    ``bias``; the convolution runs as :func:`strided_valid_conv` (its input gradient
    one matrix product).

    Attributes:
      num_maps: capsule maps (channels of capsules).
      caps_dim: dimensions of a capsule.
      kernel_size: the convolution's window.
      strides: the convolution's stride (valid padding, as in the paper).
      dtype: computation dtype.
    """

    num_maps: int = 32
    caps_dim: int = 8
    kernel_size: int = 9
    strides: int = 2
    dtype: Any = None

    def __post_init__(self) -> None:
        for name in ("num_maps", "caps_dim", "kernel_size", "strides"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"`{name}` (={value!r}) must be a positive int")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Applies the convolution and squashes each capsule.

        Args:
          x: ``(N, H, W, C)`` feature maps.

        Returns:
          ``(N, H' * W' * num_maps, caps_dim)`` capsules, ordered by position then map.

        Raises:
          ValueError: naming ``x`` if it is not 4-D.
        """
        if getattr(x, "ndim", None) != 4:
            raise ValueError(f"PrimaryCaps expects `x` of shape (N, H, W, C), got {_shape(x)}")
        c_out = self.num_maps * self.caps_dim
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], c_out))
        bias = self.param("bias", nn.initializers.zeros, (c_out,))
        dtype = self.dtype or jnp.result_type(x, kernel)
        h = strided_valid_conv(x.astype(dtype), kernel.astype(dtype), self.strides)
        h = h + bias.astype(dtype)
        n, hh, ww, _ = h.shape
        return squash(h.reshape(n, hh * ww * self.num_maps, self.caps_dim))


class RoutingCaps(nn.Module):
    r"""A capsule layer routed by agreement: :math:`\hat u_{j|i} = W_{ij} u_i`, then routing.

    One ``out_dim x in_dim`` matrix per (input capsule, output capsule) pair: the
    ``kernel`` has shape ``(in_caps, num_caps, caps_dim, in_dim)``; ``in_caps`` and
    ``in_dim`` come from the input at initialization. No bias (as in the paper).

    Attributes:
      num_caps: output capsules (10 DigitCaps on MNIST).
      caps_dim: dimensions of an output capsule (16).
      num_iterations: routing iterations (3).
      route_gradients: see :func:`dynamic_routing`.
      kernel_init: the initializer of ``W``.
      dtype: computation dtype.
    """

    num_caps: int = 10
    caps_dim: int = 16
    num_iterations: int = 3
    route_gradients: bool = False
    kernel_init: Callable[..., Array] = nn.initializers.normal(0.01)
    dtype: Any = None

    def __post_init__(self) -> None:
        for name in ("num_caps", "caps_dim", "num_iterations"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"`{name}` (={value!r}) must be a positive int")
        super().__post_init__()

    @nn.compact
    def __call__(self, u: Array, return_couplings: bool = False) -> Any:
        """Predicts each output capsule from each input capsule and routes.

        Args:
          u: input capsules ``(N, in_caps, in_dim)``.
          return_couplings: also return the couplings of every iteration.

        Returns:
          ``v`` of shape ``(N, num_caps, caps_dim)``, or ``(v, couplings)`` (see
          :func:`dynamic_routing`).

        Raises:
          ValueError: naming ``u`` if it is not 3-D or its capsule dimensions differ
            from the kernel's.
        """
        if getattr(u, "ndim", None) != 3:
            raise ValueError(
                f"RoutingCaps expects `u` of shape (N, in_caps, in_dim), got {_shape(u)}"
            )
        _, in_caps, in_dim = u.shape
        if self.has_variable("params", "kernel"):
            k = self.get_variable("params", "kernel").shape
            if (k[0], k[3]) != (in_caps, in_dim):
                raise ValueError(
                    f"RoutingCaps: `u` has {in_caps} capsules of {in_dim} dimensions "
                    f"(shape {tuple(u.shape)}), the kernel expects {k[0]} of {k[3]}"
                )
        w = self.param("kernel", self.kernel_init, (in_caps, self.num_caps, self.caps_dim, in_dim))
        dtype = self.dtype or jnp.result_type(u, w)
        # u_hat_j|i, laid out (N, out_caps, in_caps, caps_dim) as the routing wants it.
        u_hat = jnp.einsum("nid,ijed->njie", u.astype(dtype), w.astype(dtype))
        out = _routing(u_hat, self.num_iterations, self.route_gradients, return_couplings)
        if not return_couplings:
            return out
        return out[0], jnp.swapaxes(out[1], 2, 3)


def _shape(x: Any) -> str:
    shape = getattr(x, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else repr(x)
