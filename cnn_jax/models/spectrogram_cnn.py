"""A 2-D CNN over the log-mel spectrogram read as an image ("speech as an image").

The spectrogram of :class:`cnn_jax.models.tdnn.LogMelFrontEnd` becomes a one-channel
image ``(N, frames, num_mels, 1)`` (time down, frequency across); blocks of two 3x3
convolutions with batch normalization and ReLU, each block followed by 2x2 max
pooling, then global average pooling, dropout and a linear output. Unlike the TDNN,
whose kernels span every mel band at once and slide only over time, these kernels are
local in frequency too and slide over both axes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.models._common import Array, check_positive_int, check_positive_ints, check_rate
from cnn_jax.models.tdnn import LogMelFrontEnd, check_audio_input

__all__ = ["SpectrogramCNN"]


class SpectrogramCNN(nn.Module):
    """A VGG-style CNN on log-mel spectrograms (see the module docstring).

    Attributes:
      num_classes: output classes.
      widths: channels of the blocks (each: two 3x3 convolutions, then 2x2 max pooling).
      dropout: dropout rate before the output layer.
      sample_rate: the audio's sample rate.
      num_mels: mel bands of the front end.
      dtype: computation dtype.
    """

    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64)
    dropout: float = 0.3
    sample_rate: int = 8000
    num_mels: int = 40
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_positive_ints(self.widths, "widths")
        check_rate(self.dropout, "dropout")
        check_positive_int(self.num_mels, "num_mels")
        if self.num_mels < 2 ** len(self.widths):
            raise ValueError(
                f"`num_mels` (={self.num_mels}) must be at least 2**len(widths) "
                f"(={2 ** len(self.widths)}) for the poolings"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Classifies utterances.

        Args:
          x: mono audio ``(N, T, 1)``.
          train: batch statistics and dropout on.

        Returns:
          ``(logits (N, num_classes), features)`` with ``'log_mel'`` and each block's
          output ``'block_i'``.
        """
        front = LogMelFrontEnd(sample_rate=self.sample_rate, num_mels=self.num_mels)
        fc = front.feature_config()
        check_audio_input(
            x, "SpectrogramCNN", (2 ** len(self.widths) - 1) * fc.hop_length + fc.frame_length
        )
        feats: dict[str, Array] = {}
        h = front(x)
        feats["log_mel"] = h
        h = h[..., None]
        if self.dtype is not None:
            h = h.astype(self.dtype)
        for b, width in enumerate(self.widths):
            for j in range(2):
                h = Conv(
                    width,
                    3,
                    padding="SAME",
                    use_bias=False,
                    kernel_init="he_normal",
                    dtype=self.dtype,
                    name=f"conv{b}_{j}",
                )(h)
                h = nn.relu(BatchNorm(dtype=self.dtype, name=f"bn{b}_{j}")(h, train=train))
            h = ops.max_pool(h, 2)
            feats[f"block_{b}"] = h
        h = h.mean(axis=(1, 2))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(h)
        return logits.astype(jnp.float32), feats
