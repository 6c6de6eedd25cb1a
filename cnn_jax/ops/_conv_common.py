"""Argument handling shared by the convolutions: padding modes, groups, bias, dtypes.

Integer convolutions add up in a wide integer type (``accumulator``): ``int32``
(``uint32`` for unsigned inputs), or ``int64``/``uint64`` with ``jax_enable_x64``, and
return it. The sums of narrow integers do not wrap (an ``int8`` window of 9 products
of 100 is 90000, not -112); ``.astype`` the narrow type gives the wrapped value back
(two's complement arithmetic is modulo ``2**bits``). Wide inputs can still wrap: the
sums of ``int32`` inputs without x64 are ``int32``. Floating and boolean inputs keep
their dtype, as in ``lax``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.ops._validate import as_tuple, is_int
from cnn_jax.ops.geometry import Geometry, conv_out_shape
from cnn_jax.ops.limits import check_elements, check_window
from cnn_jax.ops.padding import PaddingLike, effective_kernel_size, resolve_padding

__all__ = ["PADDING_MODES", "accumulator", "add_bias", "check_groups", "prepare", "promote"]

Array = Any
IntOrSeq = int | Sequence[int]

#: ``padding_mode`` values and the ``jnp.pad`` mode each one uses.
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _check_padding_mode(padding_mode: str) -> str:
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(
            f"`padding_mode` (={padding_mode!r}) must be one of "
            f"{', '.join(map(repr, PADDING_MODES))}"
        )
    return padding_mode


def prepare(
    x: Array,
    window: Sequence[int],
    strides: IntOrSeq,
    padding: PaddingLike,
    dilation: IntOrSeq,
    padding_mode: str,
    out_channels: int | None = None,
) -> tuple[Array, Geometry]:
    """Resolves strides/dilation/padding, applies non-zero padding modes to ``x``.

    Args:
      x: the input ``(N, *spatial, C)``.
      window: the kernel's spatial size.
      strides: an int or one per spatial dimension.
      padding: any padding of ``cnn_jax.ops.padding``.
      dilation: an int or one per spatial dimension.
      padding_mode: one of ``PADDING_MODES``.
      out_channels: the output's channels, for the check of its size (``C_in`` if
        ``None``).

    Returns:
      ``x`` (padded if ``padding_mode != 'zeros'``) and the geometry whose ``padding`` is
      the zero padding still to be done by ``lax``.

    Raises:
      TypeError, ValueError: naming the argument, for bad strides, dilation, padding or
        padding mode, a kernel larger than the padded input, or sizes beyond
        ``cnn_jax.ops.limits`` (checked before ``x`` is padded).
    """
    n = len(window)
    s = as_tuple(strides, n, "strides")
    d = as_tuple(dilation, n, "dilation")
    mode = _check_padding_mode(padding_mode)
    spatial = tuple(x.shape[1:-1])
    pads = resolve_padding(padding, spatial, window, s, d)
    for dim, (i, k, dd, (lo, hi)) in enumerate(zip(spatial, window, d, pads)):
        check_window(dim, i, k, dd, (lo, hi), padding)
        eff = effective_kernel_size(k, dd)
        if i + lo + hi < eff:
            raise ValueError(
                f"kernel size {k} (dilated to {eff}) in spatial dimension {dim} is larger "
                f"than the padded input ({i} + {lo} + {hi} = {i + lo + hi}); "
                f"input shape {tuple(x.shape)}, padding {padding!r}"
            )
        if mode == "reflect" and max(lo, hi) >= i:
            raise ValueError(
                f"padding ({lo}, {hi}) in spatial dimension {dim} must be smaller than the "
                f"input size (={i}) with padding_mode='reflect'"
            )
        if mode == "circular" and max(lo, hi) > i:
            raise ValueError(
                f"padding ({lo}, {hi}) in spatial dimension {dim} must not exceed the input "
                f"size (={i}) with padding_mode='circular'"
            )
    g = Geometry(s, tuple(pads), d)
    culprit = f"`padding` (={padding!r}) with `strides` (={strides!r})"
    batch, channels = x.shape[0], x.shape[-1]
    padded = (i + lo + hi for i, (lo, hi) in zip(spatial, pads))
    check_elements((batch, *padded, channels), "the padded input", culprit)
    out = conv_out_shape(spatial, window, g)
    c_out = channels if out_channels is None else out_channels
    check_elements((batch, *out, c_out), "the output", culprit)
    if mode != "zeros" and any(lo or hi for lo, hi in pads):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)), mode=PADDING_MODES[mode])
        pads = ((0, 0),) * n
    return x, Geometry(s, tuple(pads), d)


def check_groups(groups: Any, c_in: int) -> int:
    """``groups`` as an int that divides ``c_in``; a ``TypeError``/``ValueError`` if not."""
    if not is_int(groups):
        raise TypeError(f"`groups` must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"`groups` (={groups}) must be positive")
    if c_in % groups:
        raise ValueError(f"`groups` (={groups}) must divide the input channels (={c_in})")
    return int(groups)


def add_bias(out: Array, bias: Array | None, shapes: Sequence[tuple[int, ...]]) -> Array:
    """``out + bias`` (cast to ``out``'s dtype), ``bias`` of one of ``shapes``, or ``out``."""
    if bias is None:
        return out
    bias = jnp.asarray(bias)
    if tuple(bias.shape) not in shapes:
        allowed = " or ".join(str(s) for s in shapes)
        raise ValueError(f"`bias` must have shape {allowed}, got {tuple(bias.shape)}")
    return out + bias.astype(out.dtype)


def accumulator(dtype: Any) -> Any:
    """The dtype a convolution of ``dtype`` inputs adds up in and returns, or ``None``.

    Args:
      dtype: the (common) dtype of the input and the kernel.

    Returns:
      For integers, the widest integer type of the same signedness that JAX has in
      effect (``int32``/``uint32``, ``int64``/``uint64`` with ``jax_enable_x64``);
      ``None`` (``lax``'s default: ``dtype`` itself) for floating and boolean inputs.
    """
    if not jnp.issubdtype(dtype, jnp.integer):
        return None
    wide = np.uint64 if jnp.issubdtype(dtype, jnp.unsignedinteger) else np.int64
    return jax.dtypes.canonicalize_dtype(wide)


def promote(*arrays: Array) -> list[Array]:
    """The arrays as JAX arrays of their common dtype."""
    dtype = jnp.result_type(*arrays)
    return [jnp.asarray(a, dtype) for a in arrays]
