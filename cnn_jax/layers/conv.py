"""Flax linen convolution layers over ``cnn_jax.ops``.

Each module takes the same arguments as its op, creates its parameters in the
channels-last layout of ``cnn_jax.ops`` (kernels ``(*window, C_in / groups, C_out)``),
accepts initializers by name (``'he_normal'``, ``'torch_default'``, ...; see
``cnn_jax.layers.initializers``) or as callables, and supports mixed precision:
parameters are stored in ``param_dtype`` and the computation runs in ``dtype``
(default: the promoted dtype of input and parameters).

This module holds ``Conv`` and ``ConvTranspose``; the depthwise and separable layers
live in ``cnn_jax.layers.conv_separable``, the unshared-weight ones
(``LocallyConnected``, ``TiledConv``) in ``cnn_jax.layers.conv_local``. All six are
importable from here and from ``cnn_jax.layers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax import ops
from cnn_jax.layers._checks import (
    Array,
    InitLike,
    IntOrSeq,
    bias_param,
    check_positive_int,
    resolve_init,
    spatial_rank,
)
from cnn_jax.layers.conv_local import LocallyConnected, TiledConv
from cnn_jax.layers.conv_separable import DepthwiseConv, DepthwiseSeparableConv
from cnn_jax.ops._validate import as_tuple, is_int
from cnn_jax.ops.padding import PaddingLike

__all__ = [
    "Conv",
    "ConvTranspose",
    "DepthwiseConv",
    "DepthwiseSeparableConv",
    "LocallyConnected",
    "TiledConv",
]


class Conv(nn.Module):
    """Convolution layer over ``cnn_jax.ops.conv``.

    Attributes:
      features: output channels.
      kernel_size: window size, an int (for every spatial dimension) or a tuple.
      strides: see ``cnn_jax.ops.conv``.
      padding: ``'SAME'``, ``'VALID'``, ``'FULL'``, ``'CAUSAL'``, ints or pairs.
      dilation: kernel dilation.
      groups: channel groups.
      padding_mode: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
      use_bias: whether to add a bias.
      kernel_init: initializer or its name (default ``'lecun_normal'``, as Flax).
      bias_init: initializer or its name (default ``'zeros'``).
      dtype: computation dtype (``None``: promote input and parameters).
      param_dtype: parameter dtype.
      precision: passed to ``lax``.
    """

    features: int
    kernel_size: IntOrSeq
    strides: IntOrSeq = 1
    padding: PaddingLike = "SAME"
    dilation: IntOrSeq = 1
    groups: int = 1
    padding_mode: str = "zeros"
    use_bias: bool = True
    kernel_init: InitLike = "lecun_normal"
    bias_init: InitLike = "zeros"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Applies the convolution.

        Args:
          x: ``(N, *spatial, C_in)``.

        Returns:
          ``(N, *spatial', features)``.

        Raises:
          ValueError, TypeError: for bad attributes or input (see ``cnn_jax.ops.conv``).
        """
        n = spatial_rank(x, "Conv")
        features = check_positive_int(self.features, "features")
        window = as_tuple(self.kernel_size, n, "kernel_size")
        c_in = x.shape[-1]
        if not is_int(self.groups) or self.groups < 1 or c_in % self.groups:
            raise ValueError(
                f"`groups` (={self.groups!r}) must be a positive int dividing the "
                f"input channels (={c_in})"
            )
        if features % self.groups:
            raise ValueError(f"`groups` (={self.groups}) must divide `features` (={features})")
        shape = (*window, c_in // self.groups, features)
        fan_in = int(np.prod(shape[:-1]))
        kernel = self.param(
            "kernel", resolve_init(self.kernel_init, "kernel_init", fan_in), shape, self.param_dtype
        )
        bias = bias_param(self, (features,), fan_in)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return ops.conv(
            x,
            kernel,
            bias,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            padding_mode=self.padding_mode,
            precision=self.precision,
        )


class ConvTranspose(nn.Module):
    """Transposed convolution over ``cnn_jax.ops.conv_transpose``.

    The exact adjoint of ``Conv`` with the same arguments: ``strides``, ``padding``,
    ``dilation`` and ``groups`` are those of the forward convolution, and the
    parameter ``kernel`` has the forward layout ``(*window, features / groups, C_in)``
    (``C_in`` the channels of this layer's input), which is PyTorch's
    ``ConvTranspose`` weight ``(C_in, features / groups, *window)`` transposed.

    **Initialization differs from flax's and haiku's** ``ConvTranspose``, which store
    the kernel as ``(*window, C_in, features)``. Fans are read from the stored layout,
    so here the fan-in is ``prod(window) * features / groups`` (the forward
    convolution's, and PyTorch's for its ``ConvTranspose``), there
    ``prod(window) * C_in``. With the default ``'lecun_normal'`` the kernel's std is
    ``1 / sqrt(prod(window) * features / groups)``: for a 1-D kernel of 3 taps from 128
    to 5 channels, ``1 / sqrt(15) = 0.258`` here against ``1 / sqrt(384) = 0.051`` in
    flax and haiku. For their scale, pass
    ``kernel_init=get_initializer('lecun_normal', mode='fan_out')`` (the fan-out of
    this layout is ``prod(window) * C_in``).

    Attributes:
      features: output channels.
      kernel_size: window size.
      strides: the forward convolution's strides (the upsampling factor).
      padding: the forward convolution's padding (any kind; ``'SAME'`` gives ``s * i``).
      output_padding: extra size on the high side, smaller than stride or dilation.
      dilation: kernel dilation.
      groups: channel groups.
      use_bias: whether to add a bias.
      kernel_init: initializer or its name (default ``'lecun_normal'`` over the fan-in
        ``prod(window) * features / groups``; see above).
      bias_init: initializer or its name.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      precision: passed to ``lax``.
    """

    features: int
    kernel_size: IntOrSeq
    strides: IntOrSeq = 1
    padding: PaddingLike = "VALID"
    output_padding: IntOrSeq = 0
    dilation: IntOrSeq = 1
    groups: int = 1
    use_bias: bool = True
    kernel_init: InitLike = "lecun_normal"
    bias_init: InitLike = "zeros"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, y: Array, output_shape: Sequence[int] | None = None) -> Array:
        """Applies the transposed convolution.

        Args:
          y: ``(N, *spatial, C_in)``.
          output_shape: optional spatial output shape, instead of ``output_padding``.

        Returns:
          ``(N, *spatial', features)``.

        Raises:
          ValueError, TypeError: see ``cnn_jax.ops.conv_transpose``.
        """
        n = spatial_rank(y, "ConvTranspose")
        features = check_positive_int(self.features, "features")
        window = as_tuple(self.kernel_size, n, "kernel_size")
        c_in = y.shape[-1]
        if not is_int(self.groups) or self.groups < 1 or features % self.groups:
            raise ValueError(
                f"`groups` (={self.groups!r}) must be a positive int dividing "
                f"`features` (={features})"
            )
        shape = (*window, features // self.groups, c_in)
        fan_in = int(np.prod(shape[:-1]))
        kernel = self.param(
            "kernel", resolve_init(self.kernel_init, "kernel_init", fan_in), shape, self.param_dtype
        )
        bias = bias_param(self, (features,), fan_in)
        y, kernel, bias = nn.dtypes.promote_dtype(y, kernel, bias, dtype=self.dtype)
        return ops.conv_transpose(
            y,
            kernel,
            bias,
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            output_shape=output_shape,
            dilation=self.dilation,
            groups=self.groups,
            precision=self.precision,
        )
