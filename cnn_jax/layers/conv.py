"""Flax linen modules over ``cnn_jax.ops`` convolutions.

Each module takes the same arguments as its op, creates its parameters in the
channels-last layout of ``cnn_jax.ops`` (kernels ``(*window, C_in / groups, C_out)``),
accepts initializers by name (``'he_normal'``, ``'torch_default'``, ...; see
``cnn_jax.layers.initializers``) or as callables, and supports mixed precision:
parameters are stored in ``param_dtype`` and the computation runs in ``dtype``
(default: the promoted dtype of input and parameters).
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
from cnn_jax.layers.initializers import Initializer, get_initializer
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

Array = Any
IntOrSeq = int | Sequence[int]
InitLike = str | Initializer


def _init(init: InitLike, name: str, fan_in: int) -> Initializer:
    """Resolves an initializer; PyTorch's bias default needs the weight's fan-in."""
    if (
        isinstance(init, str)
        and init.lower() in ("torch_default", "torch_default_bias")
        and name.endswith("bias_init")
    ):
        return get_initializer("torch_default_bias", fan_in=fan_in)
    try:
        return get_initializer(init)
    except (TypeError, ValueError) as e:
        raise type(e)(f"`{name}`: {e}") from None


def _check_features(features: Any, name: str = "features") -> int:
    if not is_int(features) or features < 1:
        raise ValueError(f"`{name}` (={features!r}) must be a positive int")
    return int(features)


def _spatial(x: Array, module: str) -> int:
    if not hasattr(x, "ndim") or x.ndim < 3:
        shape = getattr(x, "shape", None)
        raise ValueError(f"{module} expects inputs of shape (N, *spatial, C), got shape {shape}")
    return x.ndim - 2


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
        n = _spatial(x, "Conv")
        features = _check_features(self.features)
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
            "kernel", _init(self.kernel_init, "kernel_init", fan_in), shape, self.param_dtype
        )
        bias = (
            self.param(
                "bias", _init(self.bias_init, "bias_init", fan_in), (features,), self.param_dtype
            )
            if self.use_bias
            else None
        )
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

    Attributes:
      features: output channels.
      kernel_size: window size.
      strides: the forward convolution's strides (the upsampling factor).
      padding: the forward convolution's padding (any kind; ``'SAME'`` gives ``s * i``).
      output_padding: extra size on the high side, smaller than stride or dilation.
      dilation: kernel dilation.
      groups: channel groups.
      use_bias: whether to add a bias.
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
        n = _spatial(y, "ConvTranspose")
        features = _check_features(self.features)
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
            "kernel", _init(self.kernel_init, "kernel_init", fan_in), shape, self.param_dtype
        )
        bias = (
            self.param(
                "bias", _init(self.bias_init, "bias_init", fan_in), (features,), self.param_dtype
            )
            if self.use_bias
            else None
        )
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
        n = _spatial(x, "DepthwiseConv")
        m = _check_features(self.depth_multiplier, "depth_multiplier")
        window = as_tuple(self.kernel_size, n, "kernel_size")
        out = x.shape[-1] * m
        shape = (*window, 1, out)
        fan_in = int(np.prod(window))
        kernel = self.param(
            "kernel", _init(self.kernel_init, "kernel_init", fan_in), shape, self.param_dtype
        )
        bias = (
            self.param("bias", _init(self.bias_init, "bias_init", fan_in), (out,), self.param_dtype)
            if self.use_bias
            else None
        )
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
        n = _spatial(x, "DepthwiseSeparableConv")
        features = _check_features(self.features)
        m = _check_features(self.depth_multiplier, "depth_multiplier")
        window = as_tuple(self.kernel_size, n, "kernel_size")
        mid = x.shape[-1] * m
        dw = self.param(
            "depthwise_kernel",
            _init(self.depthwise_init, "depthwise_init", int(np.prod(window))),
            (*window, 1, mid),
            self.param_dtype,
        )
        pw = self.param(
            "pointwise_kernel",
            _init(self.pointwise_init, "pointwise_init", mid),
            (*(1,) * n, mid, features),
            self.param_dtype,
        )
        bias = (
            self.param(
                "bias", _init(self.bias_init, "bias_init", mid), (features,), self.param_dtype
            )
            if self.use_bias
            else None
        )
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
        n = _spatial(x, "LocallyConnected")
        features = _check_features(self.features)
        window = as_tuple(self.kernel_size, n, "kernel_size")
        strides = as_tuple(self.strides, n, "strides")
        dilation = as_tuple(self.dilation, n, "dilation")
        out_sp = ops.conv_output_size(tuple(x.shape[1:-1]), window, strides, self.padding, dilation)
        c_in = x.shape[-1]
        fan_in = int(np.prod(window)) * c_in
        kernel = self.param(
            "kernel",
            _lc_init(_init(self.kernel_init, "kernel_init", fan_in), n),
            (*out_sp, *window, c_in, features),
            self.param_dtype,
        )
        bias_shape = (features,) if self.shared_bias else (*out_sp, features)
        bias = (
            self.param(
                "bias", _init(self.bias_init, "bias_init", fan_in), bias_shape, self.param_dtype
            )
            if self.use_bias
            else None
        )
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


def _lc_init(init: Initializer, n_lead: int) -> Initializer:
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
        n = _spatial(x, "TiledConv")
        features = _check_features(self.features)
        window = as_tuple(self.kernel_size, n, "kernel_size")
        tile = as_tuple(self.tile, n, "tile")
        c_in = x.shape[-1]
        fan_in = int(np.prod(window)) * c_in
        kernel = self.param(
            "kernel",
            _lc_init(_init(self.kernel_init, "kernel_init", fan_in), n),
            (*tile, *window, c_in, features),
            self.param_dtype,
        )
        bias = (
            self.param(
                "bias", _init(self.bias_init, "bias_init", fan_in), (features,), self.param_dtype
            )
            if self.use_bias
            else None
        )
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
