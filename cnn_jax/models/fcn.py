"""Fully convolutional networks (Long, Shelhamer & Darrell 2015): FCN-32s, FCN-16s, FCN-8s.

The backbone is a VGG-style classifier made convolutional: ``stages`` of 3x3
convolutions + ReLU, each stage ending with a 2x2 max pool (VGG-16's five stages by
default: output stride 32), then the classifier's fully connected layers as
convolutions: ``fc6`` a ``fc_kernel x fc_kernel`` convolution (7x7, 4096 in VGG-16),
``fc7`` 1x1 (4096), each with ReLU and dropout 0.5, and ``score_fr`` 1x1 to the classes.
The coarse scores are upsampled by transposed convolutions initialized to bilinear
interpolation (``bilinear_kernel``) and learned:

* ``FCN-32s`` (``skips=0``): one upsampling by the output stride (32).
* ``FCN-16s`` (``skips=1``): the scores are upsampled 2x and added to a 1x1 scoring of
  the last-but-one pool (``pool4``), and the sum upsampled 16x.
* ``FCN-8s`` (``skips=2``): the same again with ``pool3``, then 8x.

The skip scorers start at zero (as in the paper's Caffe models), so an FCN-16s/8s
starts as the coarser net it is fine-tuned from. With the paper's widths and 21
classes (PASCAL VOC) FCN-8s has 134,489,759 parameters, as the Caffe model, of which
134,346,581 before the upsampling layers (the paper's "134M" for FCN-VGG16).
Departure from the Caffe models, whose first convolution pads the input by 100 pixels
and whose outputs are then cropped: convolutions here are 'SAME', so the input height
and width must be divisible by the output stride and the scores come out at the
input's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax import ops
from cnn_jax.layers import Conv, ConvTranspose
from cnn_jax.models._common import Array, check_images, check_positive_int, check_rate
from cnn_jax.models.segnet import SEGNET_VGG16_STAGES, _check_stages

__all__ = ["FCN", "bilinear_kernel"]


def bilinear_kernel(factor: int, channels: int) -> np.ndarray:
    """The ``ConvTranspose`` kernel that upsamples each channel bilinearly by ``factor``.

    The FCN reference code's ``upsample_filt``: a ``2 factor - factor % 2`` square
    window, ``(1 - |x - c| / f)(1 - |y - c| / f)`` per channel, zero across channels.

    Args:
      factor: the upsampling factor (the transposed convolution's stride).
      channels: input and output channels.

    Returns:
      ``(k, k, channels, channels)`` float32 (the forward layout of ``ConvTranspose``).
    """
    factor = check_positive_int(factor, "factor")
    k = 2 * factor - factor % 2
    f = (k + 1) // 2
    c = f - 1 if k % 2 == 1 else f - 0.5
    og = np.arange(k)
    filt = (1 - np.abs(og - c) / f)[:, None] * (1 - np.abs(og - c) / f)[None, :]
    out = np.zeros((k, k, channels, channels), np.float32)
    out[:, :, np.arange(channels), np.arange(channels)] = filt[:, :, None]
    return out


def _upsample(x: Array, factor: int, name: str, dtype: Any) -> Array:
    """Learned upsampling by ``factor`` (bilinear at init), output exactly ``factor`` x larger."""
    c = x.shape[-1]
    k = 2 * factor - factor % 2

    def init(key: Array, shape: tuple[int, ...], dtype_: Any = jnp.float32) -> Array:
        del key
        return jnp.asarray(bilinear_kernel(factor, shape[-1]), dtype_).reshape(shape)

    pad_lo = (k - factor) // 2
    padding = ((pad_lo, k - factor - pad_lo),) * 2
    return ConvTranspose(
        c,
        k,
        strides=factor,
        padding=padding,
        use_bias=False,
        kernel_init=init,
        dtype=dtype,
        name=name,
    )(x)


class FCN(nn.Module):
    """FCN-32s/16s/8s (see the module docstring).

    Attributes:
      num_classes: output classes.
      skips: 0 (FCN-32s), 1 (FCN-16s) or 2 (FCN-8s).
      stages: the backbone's conv widths per stage (VGG-16's by default).
      fc_features: width of ``fc6`` and ``fc7`` (4096 in the paper).
      fc_kernel: the window of ``fc6`` (7: VGG-16's 7x7 pool5 map).
      dropout_rate: dropout after ``fc6`` and ``fc7``.
      dtype: computation dtype.
    """

    num_classes: int = 21
    skips: int = 2
    stages: Sequence[Sequence[int]] = SEGNET_VGG16_STAGES
    fc_features: int = 4096
    fc_kernel: int = 7
    dropout_rate: float = 0.5
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        stages = _check_stages(self.stages)
        if not (isinstance(self.skips, int) and 0 <= self.skips < len(stages)):
            raise ValueError(
                f"`skips` (={self.skips!r}) must be an int in [0, {min(2, len(stages) - 1)}] "
                "(0: FCN-32s, 1: FCN-16s, 2: FCN-8s) below the number of stages"
            )
        check_positive_int(self.fc_features, "fc_features")
        check_positive_int(self.fc_kernel, "fc_kernel")
        check_rate(self.dropout_rate, "dropout_rate")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Dense class scores at the input's size.

        Args:
          x: ``(N, H, W, C)`` images, ``H`` and ``W`` divisible by ``2 ** len(stages)``.
          train: dropout on in training (needs a ``'dropout'`` rng).

        Returns:
          ``(logits, features)``: logits ``(N, H, W, num_classes)``; features
          ``pool{i}``, ``score_fr`` (the coarse scores) and ``fused{j}`` (after each skip).

        Raises:
          ValueError: for a wrong input rank or a size not divisible by the stride.
        """
        stages = tuple(self.stages)
        n, h, w, _ = check_images(x, "FCN")
        stride = 2 ** len(stages)
        for name, size in (("height", h), ("width", w)):
            if size % stride:
                lo = size // stride * stride
                near = [s for s in (lo, lo + stride) if s > 0]
                raise ValueError(
                    f"FCN with {len(stages)} pooling stages needs `x` {name} divisible by "
                    f"{stride}, got {size} (shape {tuple(x.shape)}); nearest valid: {near}"
                )
        f: dict[str, Array] = {}
        pools = []
        for i, widths in enumerate(stages):
            for j, width in enumerate(widths):
                x = nn.relu(Conv(width, 3, dtype=self.dtype, name=f"conv{i + 1}_{j + 1}")(x))
            f[f"pool{i + 1}"] = x = ops.max_pool(x, 2)
            pools.append(x)
        for name, k in (("fc6", self.fc_kernel), ("fc7", 1)):
            x = nn.relu(Conv(self.fc_features, k, dtype=self.dtype, name=name)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        zeros = jax.nn.initializers.zeros
        f["score_fr"] = x = Conv(
            self.num_classes, 1, kernel_init=zeros, dtype=self.dtype, name="score_fr"
        )(x)
        for s in range(self.skips):
            pool = pools[len(stages) - 2 - s]
            x = _upsample(x, 2, f"upscore{s + 1}", self.dtype)
            score = Conv(
                self.num_classes,
                1,
                kernel_init=zeros,
                dtype=self.dtype,
                name=f"score_pool{len(stages) - 1 - s}",
            )(pool)
            f[f"fused{s + 1}"] = x = x + score
        factor = h // x.shape[1]
        logits = _upsample(x, factor, "upscore_final", self.dtype)
        f["logits"] = logits
        del n, w
        return logits, f
