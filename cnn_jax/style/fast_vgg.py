"""VGG-19's features as a function of prepared parameters, for optimizing an image.

:class:`~cnn_jax.style.features.VGGFeatures` computes the same values; this is the form
:func:`cnn_jax.style.stylize` differentiates inside its jit-compiled optimization loop.
Each 3x3 convolution is a ``jax.custom_vjp`` whose input gradient is a plain
forward convolution of the output gradient with the kernel flipped in space and with
its input and output channels swapped (``kernel_t``), which :func:`prepare` computes
once, outside the loop, and which enters the loop as an argument.

Why: differentiated automatically, the input gradient of ``lax.conv_general_dilated``
is a convolution with a reversed kernel whose channel dimensions are swapped in the
convolution's dimension numbers (``01oi``). Outside a loop, XLA:CPU inserts a
transpose and runs its Eigen convolution; inside a ``while`` loop (``lax.scan``,
``optax.lbfgs``' line search) the swap stays in the convolution, which XLA:CPU then
computes with its generic loop emitter instead of Eigen, several times slower for
VGG-19's backward pass. With ``kernel_t`` prepared, every convolution of the
value-and-gradient has XLA:CPU's canonical ``NHWC x HWIO -> NHWC`` form, in a loop or
not.

Two smaller choices, measured on XLA:CPU: a pooling's output reaches the next
convolution through a no-op YNNPACK cannot fuse (``lax.reduce_precision`` to float32's
own widths, exact; identity derivative), which keeps that convolution with XLA's own
(Eigen) kernel instead of a slower YNNPACK fusion grown from the pooling; and the input
gradient of a convolution with at most :data:`GEMM_BELOW_CHANNELS` input channels (the
RGB first layer) is one matrix product with all nine taps' kernels followed by the sum
of the nine shifted results, instead of a convolution with 3 output channels.

With ``prepare(..., winograd=True)`` (what :func:`cnn_jax.style.stylize` does by
default on the CPU), the layers with at least :data:`WINOGRAD_MIN_CHANNELS` input and output
channels run on feature maps of at most :data:`WINOGRAD_MAX_PIXELS` pixels by Winograd's
F(4x4, 3x3) (:mod:`cnn_jax.ops.winograd`), forward and input gradient alike, with
kernels transformed once by :func:`prepare`: 4x fewer multiplications, at a float32
rounding of up to about ``2e-5`` of each layer's largest output.

The derivative is exact for any use (up to that rounding on Winograd layers): the
output does not depend on ``kernel_t``
(its cotangent is zero), the kernel's is ``lax``'s, and the input's equals ``lax``'s
whenever ``kernel_t`` is ``transpose_kernel(kernel)`` (which :func:`prepare` ensures).
Only reverse mode is defined (``jax.custom_vjp``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax import ops
from cnn_jax.ops.winograd import winograd_conv3x3, winograd_transforms
from cnn_jax.style.features import _BLOCKS, _TABLE, check_layers, min_image_size, select_params

__all__ = [
    "GEMM_BELOW_CHANNELS",
    "WINOGRAD_MAX_PIXELS",
    "WINOGRAD_MIN_CHANNELS",
    "conv3x3",
    "conv3x3_winograd",
    "features",
    "prepare",
    "transpose_kernel",
]

Array = Any
_DN = ("NHWC", "HWIO", "NHWC")
_PAD = ((1, 1), (1, 1))
#: A convolution with fewer input channels than this has its input gradient computed
#: as one matrix product and a sum of shifted slices (``_input_grad``).
GEMM_BELOW_CHANNELS = 8
#: With ``prepare(..., winograd=True)``: layers with at least this many input and output
#: channels, on feature maps of at most ``WINOGRAD_MAX_PIXELS`` pixels, use Winograd's
#: F(4x4, 3x3) (:mod:`cnn_jax.ops.winograd`); ``python -m benchmarks.winograd_cpu``
#: times both forms per VGG-19 layer.
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MAX_PIXELS = 128 * 128


@jax.custom_vjp
def _fusion_boundary(x: Array) -> Array:
    """``x`` through a no-op YNNPACK cannot fuse (float32 only; others unchanged)."""
    if x.dtype != jnp.float32:
        return x
    return lax.reduce_precision(x, exponent_bits=8, mantissa_bits=23)


_fusion_boundary.defvjp(lambda x: (_fusion_boundary(x), None), lambda _, g: (g,))


def _input_grad(g: Array, kernel_t: Array) -> Array:
    """``conv(g, kernel_t)``: a convolution, or for few output channels a product and a sum.

    ``y[i, j] = sum_{a, b} g[i + a - 1, j + b - 1] @ kernel_t[a, b]``: the product
    ``g @ [kernel_t[0, 0] | ... | kernel_t[2, 2]]`` once, then the nine shifted slices of
    its zero-padded result added up.
    """
    c_out = kernel_t.shape[-1]
    if c_out >= GEMM_BELOW_CHANNELS:
        return _conv(g, kernel_t)
    n, h, w, c = g.shape
    taps = kernel_t.transpose(2, 0, 1, 3).reshape(c, 9 * c_out)
    p = jnp.dot(g.reshape(n * h * w, c), taps).reshape(n, h, w, 3, 3, c_out)
    p = jnp.pad(p, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))
    out = None
    for a in range(3):
        for b in range(3):
            term = p[:, a : a + h, b : b + w, a, b, :]
            out = term if out is None else out + term
    return out


def _conv(x: Array, kernel: Array) -> Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), _PAD, dimension_numbers=_DN)


def transpose_kernel(kernel: Array) -> Array:
    """``(3, 3, C_in, C_out)`` -> ``(3, 3, C_out, C_in)``, flipped in space (input gradient)."""
    return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


@jax.custom_vjp
def conv3x3(x: Array, kernel: Array, kernel_t: Array) -> Array:
    """A 3x3, stride-1, padding-1 ``NHWC x HWIO`` convolution.

    Args:
      x: ``(N, H, W, C_in)``.
      kernel: ``(3, 3, C_in, C_out)``.
      kernel_t: ``transpose_kernel(kernel)``, used only by the input gradient.

    Returns:
      ``(N, H, W, C_out)``, ``lax.conv_general_dilated``'s value.
    """
    return _conv(x, kernel)


def _conv3x3_fwd(x: Array, kernel: Array, kernel_t: Array) -> tuple[Array, tuple]:
    return _conv(x, kernel), (x, kernel, kernel_t)


def _conv3x3_bwd(res: tuple, g: Array) -> tuple[Array, Array, Array]:
    x, kernel, kernel_t = res
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k), kernel)
    (dk,) = kernel_vjp(g)  # removed by XLA where no one uses it
    return _input_grad(g, kernel_t), dk, jnp.zeros_like(kernel_t)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def conv3x3_winograd(x: Array, kernel: Array, u: Array, u_t: Array) -> Array:
    """:func:`conv3x3` by Winograd's F(4x4, 3x3), both ways, with transformed kernels.

    ``cnn_jax.ops.winograd_conv3x3(x, kernel, (u, u_t))``: the kernel gradient is
    ``lax``'s, the input gradient Winograd's with ``u_t``.

    Args:
      x: ``(N, H, W, C_in)``.
      kernel: ``(3, 3, C_in, C_out)`` (used only by the kernel's gradient).
      u: ``winograd_kernel(kernel)``.
      u_t: ``winograd_kernel(transpose_kernel(kernel))``, for the input gradient.

    Returns:
      ``(N, H, W, C_out)``, the convolution up to Winograd's rounding
      (:mod:`cnn_jax.ops.winograd`).
    """
    return winograd_conv3x3(x, kernel, (u, u_t))


def prepare(
    params: Mapping[str, Any], layers: Sequence[str], winograd: bool = False
) -> dict[str, dict[str, Array]]:
    """The VGG-19 parameters ``layers`` need, each with its ``kernel_t``.

    Args:
      params: a VGG-19 ``params`` tree (``cnn_jax.models.VGG19``'s or
        ``cnn_jax.style.load_vgg19``'s).
      layers: the layer names to compute.
      winograd: also prepare Winograd-transformed kernels (``u``, ``u_t``) for the
        layers with at least :data:`WINOGRAD_MIN_CHANNELS` input and output channels;
        :func:`features` then computes those layers (both ways) by Winograd's
        F(4x4, 3x3) on feature maps of at most :data:`WINOGRAD_MAX_PIXELS` pixels.

    Returns:
      ``{'features_{i}': {'kernel', 'bias', 'kernel_t'[, 'u', 'u_t']}}``.

    Raises:
      ValueError: for unknown layers or missing modules (``select_params``).
      TypeError: if ``winograd`` is not a bool.
    """
    if not isinstance(winograd, bool):
        raise TypeError(f"`winograd` must be a bool, got {winograd!r}")
    selected = select_params(params, layers)
    out = {}
    for name, p in selected.items():
        kernel = jnp.asarray(p["kernel"])
        entry = {
            "kernel": kernel,
            "bias": jnp.asarray(p["bias"]),
            "kernel_t": transpose_kernel(kernel),
        }
        if winograd and min(kernel.shape[2:]) >= WINOGRAD_MIN_CHANNELS:
            entry["u"], entry["u_t"] = winograd_transforms(kernel)
        out[name] = entry
    return out


def features(
    prepared: Mapping[str, Mapping[str, Array]],
    x: Array,
    layers: Sequence[str],
    pooling: str = "max",
) -> dict[str, Array]:
    """``VGGFeatures(layers, pooling).apply({'params': params}, x)``, from :func:`prepare`'s tree.

    Args:
      prepared: :func:`prepare`'s result for (at least) ``layers``.
      x: preprocessed ``(N, H, W, 3)`` images.
      layers: the layer names to return.
      pooling: ``'max'`` or ``'avg'``.

    Returns:
      ``{layer: (N, h, w, C)}``.

    Raises:
      ValueError: for bad layers or pooling, input that is not ``(N, H, W, 3)``, or
        smaller than :func:`~cnn_jax.style.features.min_image_size` of the layers.
    """
    layers = check_layers(layers)
    if pooling not in ("max", "avg"):
        raise ValueError(f"`pooling` (={pooling!r}) must be 'max' or 'avg'")
    need = min_image_size(layers)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"features needs (N, H, W, 3) images, got shape {x.shape}")
    if min(x.shape[1:3]) < need:
        raise ValueError(
            f"images of {x.shape[1]}x{x.shape[2]} are too small for layers "
            f"{tuple(layers)}: each side must be at least {need}"
        )
    deepest = max(_TABLE[n][0] for n in layers)
    wanted = set(layers)
    out: dict[str, Array] = {}
    h, index = x, 0
    for b, widths in enumerate(_BLOCKS, start=1):
        for i in range(1, len(widths) + 1):
            p = prepared[f"features_{index}"]
            if "u" in p and h.shape[1] * h.shape[2] <= WINOGRAD_MAX_PIXELS:
                h = conv3x3_winograd(h, p["kernel"], p["u"], p["u_t"]) + p["bias"]
            else:
                h = conv3x3(h, p["kernel"], p["kernel_t"]) + p["bias"]
            if f"conv{b}_{i}" in wanted:
                out[f"conv{b}_{i}"] = h
            h = jax.nn.relu(h)
            if f"relu{b}_{i}" in wanted:
                out[f"relu{b}_{i}"] = h
            index += 2
            if index > deepest:
                return out
        h = ops.max_pool(h, 2, 2) if pooling == "max" else ops.avg_pool(h, 2, 2)
        if f"pool{b}" in wanted:
            out[f"pool{b}"] = h
        h = _fusion_boundary(h)
        index += 1
        if index > deepest:
            return out
    return out
