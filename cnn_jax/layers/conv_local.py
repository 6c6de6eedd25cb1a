"""Convolution layers with unshared weights: locally connected and tiled.

Conventions as in ``cnn_jax.layers.conv``: channels last, initializers by name or
callable, parameters in ``param_dtype``, computation in ``dtype``. Each output position
(``LocallyConnected``) or tile position (``TiledConv``) has its own kernel, initialized
with the fans of one position's kernel ``(*window, C_in, C_out)``, so variance-scaling
initializers give the scale of ``Conv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
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
from cnn_jax.layers.initializers import Initializer
from cnn_jax.ops._validate import as_tuple
from cnn_jax.ops.padding import PaddingLike

__all__ = ["LocallyConnected", "TiledConv"]


def _per_position_init(init: Initializer, n_lead: int) -> Initializer:
    """Initializes each of the ``n_lead`` leading positions as an independent kernel.

    Fans are those of one position's kernel ``(*window, C_in, C_out)``, not of the
    whole array, so variance-scaling initializers give the same scale as ``Conv``.
    """

    def wrapped(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        lead, per = tuple(shape[:n_lead]), tuple(shape[n_lead:])
        keys = jax.random.split(key, int(np.prod(lead)))
        flat = jax.vmap(lambda k: init(k, per, dtype))(keys)
        return flat.reshape(*lead, *per)

    return wrapped


class LocallyConnected(nn.Module):
    """Locally connected layer: unshared weights per output position.

    Parameters: ``kernel`` ``(*out_spatial, *window, C_in, features)`` and ``bias``
    ``(*out_spatial, features)`` (or ``(features,)`` with ``shared_bias=True``); the
    output grid follows from the input shape at initialization.

    Attributes:
      features: output channels.
      kernel_size: window size.
      strides: see ``Conv``.
      padding: see ``Conv`` (default ``'VALID'``).
      dilation: see ``Conv``.
      padding_mode: see ``Conv``.
      use_bias: whether to add a bias.
      shared_bias: one bias per channel instead of one per position and channel.
      kernel_init: initializer or its name.
      bias_init: initializer or its name.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      precision: passed to ``lax``.
    """

    features: int
    kernel_size: IntOrSeq
    strides: IntOrSeq = 1
    padding: PaddingLike = "VALID"
    dilation: IntOrSeq = 1
    padding_mode: str = "zeros"
    use_bias: bool = True
    shared_bias: bool = False
    kernel_init: InitLike = "lecun_normal"
    bias_init: InitLike = "zeros"
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: lax.PrecisionLike = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Applies the locally connected layer.

        Args:
          x: ``(N, *spatial, C_in)``.

        Returns:
          ``(N, *out_spatial, features)``.

        Raises:
          ValueError, TypeError: see ``cnn_jax.ops.locally_connected``.
        """
        n = spatial_rank(x, "LocallyConnected")
        features = check_positive_int(self.features, "features")
        window = as_tuple(self.kernel_size, n, "kernel_size")
        strides = as_tuple(self.strides, n, "strides")
        dilation = as_tuple(self.dilation, n, "dilation")
        out_sp = ops.conv_output_size(tuple(x.shape[1:-1]), window, strides, self.padding, dilation)
        c_in = x.shape[-1]
        fan_in = int(np.prod(window)) * c_in
        kernel = self.param(
            "kernel",
            _per_position_init(resolve_init(self.kernel_init, "kernel_init", fan_in), n),
            (*out_sp, *window, c_in, features),
            self.param_dtype,
        )
        bias_shape = (features,) if self.shared_bias else (*out_sp, features)
        bias = bias_param(self, bias_shape, fan_in)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return ops.locally_connected(
            x,
            kernel,
            bias,
            strides=strides,
            padding=self.padding,
            dilation=dilation,
            padding_mode=self.padding_mode,
            precision=self.precision,
        )


class TiledConv(nn.Module):
    """Tiled convolution (Ngiam et al. 2010): ``tile`` kernels in rotation over positions.

    Parameters: ``kernel`` ``(*tile, *window, C_in, features)``, ``bias``
    ``(features,)``. ``tile=1`` is ``Conv``; ``tile`` equal to the output grid is
    ``LocallyConnected``.

    Attributes:
      features: output channels.
      kernel_size: window size.
      tile: kernels per spatial dimension, an int or a tuple.
      strides: see ``Conv``.
      padding: see ``Conv`` (default ``'VALID'``).
      dilation: see ``Conv``.
      padding_mode: see ``Conv``.
      use_bias: whether to add a bias.
      kernel_init: initializer or its name.
      bias_init: initializer or its name.
      dtype: computation dtype.
      param_dtype: parameter dtype.
      precision: passed to ``lax``.
    """

    features: int
    kernel_size: IntOrSeq
    tile: IntOrSeq = 2
    strides: IntOrSeq = 1
    padding: PaddingLike = "VALID"
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
        """Applies the tiled convolution.

        Args:
          x: ``(N, *spatial, C_in)``.

        Returns:
          ``(N, *out_spatial, features)``.

        Raises:
          ValueError, TypeError: see ``cnn_jax.ops.tiled_conv``.
        """
        n = spatial_rank(x, "TiledConv")
        features = check_positive_int(self.features, "features")
        window = as_tuple(self.kernel_size, n, "kernel_size")
        tile = as_tuple(self.tile, n, "tile")
        c_in = x.shape[-1]
        fan_in = int(np.prod(window)) * c_in
        kernel = self.param(
            "kernel",
            _per_position_init(resolve_init(self.kernel_init, "kernel_init", fan_in), n),
            (*tile, *window, c_in, features),
            self.param_dtype,
        )
        bias = bias_param(self, (features,), fan_in)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return ops.tiled_conv(
            x,
            kernel,
            bias,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation,
            padding_mode=self.padding_mode,
            precision=self.precision,
        )
