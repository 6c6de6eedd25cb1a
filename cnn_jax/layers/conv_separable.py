"""Depthwise and depthwise separable convolution layers over ``cnn_jax.ops``.

Conventions as in ``cnn_jax.layers.conv``: channels last, initializers by name or
callable, parameters in ``param_dtype``, computation in ``dtype``.
"""

from __future__ import annotations

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
from cnn_jax.ops._validate import as_tuple
from cnn_jax.ops.padding import PaddingLike

__all__ = ["DepthwiseConv", "DepthwiseSeparableConv"]


class DepthwiseConv(nn.Module):
    """Depthwise convolution (``groups = C_in``) with a depth multiplier.

    Attributes:
      kernel_size: window size.
      depth_multiplier: filters per input channel (output channels ``C_in * m``).
      strides: see ``Conv``.
      padding: see ``Conv``.
      dilation: see ``Conv``.
      padding_mode: see ``Conv``.
      use_bias: whether to add a bias.
      kernel_init: initializer or its name.
      bias_init: initializer or its name.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      precision: passed to ``lax``.
    """

    kernel_size: IntOrSeq
    depth_multiplier: int = 1
    strides: IntOrSeq = 1
    padding: PaddingLike = "SAME"
    dilation: IntOrSeq = 1
    padding_mode: str = "zeros"
    use_bias: bool = True
    kernel_init: InitLike = "lecun_normal"
    bias_init: InitLike = "zeros"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Applies the depthwise convolution.

        Args:
          x: ``(N, *spatial, C)``.

        Returns:
          ``(N, *spatial', C * depth_multiplier)``.

        Raises:
          ValueError, TypeError: see ``cnn_jax.ops.depthwise_conv``.
        """
        n = spatial_rank(x, "DepthwiseConv")
        m = check_positive_int(self.depth_multiplier, "depth_multiplier")
        window = as_tuple(self.kernel_size, n, "kernel_size")
        out = x.shape[-1] * m
        shape = (*window, 1, out)
        fan_in = int(np.prod(window))
        kernel = self.param(
            "kernel", resolve_init(self.kernel_init, "kernel_init", fan_in), shape, self.param_dtype
        )
        bias = bias_param(self, (out,), fan_in)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return ops.depthwise_conv(
            x,
            kernel,
            bias,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            padding_mode=self.padding_mode,
            precision=self.precision,
        )


class DepthwiseSeparableConv(nn.Module):
    """Depthwise separable convolution (Xception; Keras ``SeparableConv2D``).

    A depthwise convolution with ``depth_multiplier`` filters per channel, then a 1x1
    pointwise convolution to ``features`` channels, with no activation in between.
    Parameters: ``depthwise_kernel`` ``(*window, 1, C * m)``, ``pointwise_kernel``
    ``(1, ..., 1, C * m, features)``, ``bias`` ``(features,)``.

    Attributes:
      features: output channels.
      kernel_size: the depthwise window size.
      depth_multiplier: depthwise filters per input channel.
      strides: of the depthwise step.
      padding: of the depthwise step.
      dilation: of the depthwise step.
      padding_mode: of the depthwise step.
      use_bias: whether to add a bias after the pointwise step.
      depthwise_init: initializer or its name for the depthwise kernel.
      pointwise_init: initializer or its name for the pointwise kernel.
      bias_init: initializer or its name.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      precision: passed to ``lax``.
    """

    features: int
    kernel_size: IntOrSeq
    depth_multiplier: int = 1
    strides: IntOrSeq = 1
    padding: PaddingLike = "SAME"
    dilation: IntOrSeq = 1
    padding_mode: str = "zeros"
    use_bias: bool = True
    depthwise_init: InitLike = "lecun_normal"
    pointwise_init: InitLike = "lecun_normal"
    bias_init: InitLike = "zeros"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Applies the depthwise then the pointwise convolution.

        Args:
          x: ``(N, *spatial, C)``.

        Returns:
          ``(N, *spatial', features)``.

        Raises:
          ValueError, TypeError: see ``cnn_jax.ops.separable_conv``.
        """
        n = spatial_rank(x, "DepthwiseSeparableConv")
        features = check_positive_int(self.features, "features")
        m = check_positive_int(self.depth_multiplier, "depth_multiplier")
        window = as_tuple(self.kernel_size, n, "kernel_size")
        mid = x.shape[-1] * m
        dw = self.param(
            "depthwise_kernel",
            resolve_init(self.depthwise_init, "depthwise_init", int(np.prod(window))),
            (*window, 1, mid),
            self.param_dtype,
        )
        pw = self.param(
            "pointwise_kernel",
            resolve_init(self.pointwise_init, "pointwise_init", mid),
            (*(1,) * n, mid, features),
            self.param_dtype,
        )
        bias = bias_param(self, (features,), mid)
        x, dw, pw, bias = nn.dtypes.promote_dtype(x, dw, pw, bias, dtype=self.dtype)
        return ops.separable_conv(
            x,
            dw,
            pw,
            bias,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            padding_mode=self.padding_mode,
            precision=self.precision,
        )
