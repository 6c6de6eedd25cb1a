"""The time-delay neural network (Waibel, Hanazawa, Hinton, Shikano & Lang 1989).

A TDNN is a stack of 1-D convolutions over time: every unit of layer ``l`` sees the
units of layer ``l - 1`` at ``context[l]`` consecutive time steps (its "delays"), and
the same weights are used at every time step (shift invariance). The last layer has
one unit per class at each time step; the network's output integrates them over time.

The paper's network (``TDNN(num_mels=16, hidden=(8,), context=(3, 5), act='sigmoid')``
for its 3 classes ``/b, d, g/``): 16 mel-scale coefficients every 10 ms; a hidden layer
of 8 units with delays 0-2 (3 frames); a layer of 3 units with delays 0-4 (5 frames);
each output is the integral over time of its row of the last layer. Departures, each
an attribute: the integration is the mean over frames of the last layer's per-frame
scores, used as logits for a softmax (the paper summed squared sigmoid activations);
the default activation is ReLU with batch normalization (``act='sigmoid'``,
``batch_norm=False`` for the paper's units); ``dilation`` spaces the delays (1: the
paper's consecutive frames).

The model reads raw audio: its first layer is :class:`LogMelFrontEnd` (log-mel
spectrogram from :mod:`cnn_jax.data.audio_features`, then per-utterance mean and
variance normalization of every mel band), so a config feeds FSDD's ``audio`` arrays
directly.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax.data import audio_features
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.models._common import (
    Array,
    check_choice,
    check_positive_int,
    check_positive_ints,
    check_rate,
)

__all__ = ["TDNN", "LogMelFrontEnd", "check_audio_input"]

_ACTS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh}


def check_audio_input(x: Any, model: str, min_samples: int) -> tuple[int, int, int]:
    """Checks that ``x`` is mono audio ``(N, T, 1)`` with ``T >= min_samples``.

    Raises:
      ValueError: naming ``x`` and its shape.
    """
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 3 or shape[-1] != 1:
        got = f"shape {tuple(shape)}" if shape is not None else repr(x)
        raise ValueError(f"{model} expects mono audio `x` of shape (N, T, 1), got {got}")
    if shape[1] < min_samples:
        raise ValueError(
            f"{model} needs `x` of at least {min_samples} samples, got shape {tuple(shape)}"
        )
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


class LogMelFrontEnd(nn.Module):
    """Raw audio -> normalized log-mel spectrogram (no parameters).

    Attributes:
      sample_rate: the audio's rate (FSDD: 8000 Hz).
      num_mels: mel bands.
      frame_length: samples per frame (200 = 25 ms at 8 kHz).
      hop_length: samples between frames (80 = 10 ms at 8 kHz).
      n_fft: FFT size.
      normalize: subtract each utterance's mean and divide by its standard deviation,
        per mel band (cepstral mean and variance normalization).
    """

    sample_rate: int = 8000
    num_mels: int = 40
    frame_length: int = 200
    hop_length: int = 80
    n_fft: int = 256
    normalize: bool = True

    def feature_config(self) -> audio_features.FeatureConfig:
        """The :class:`~cnn_jax.data.audio_features.FeatureConfig` of this front end."""
        return audio_features.FeatureConfig(
            sample_rate=self.sample_rate,
            frame_length=self.frame_length,
            hop_length=self.hop_length,
            n_fft=self.n_fft,
            num_mels=self.num_mels,
            num_mfcc=1,
        )

    def __call__(self, audio: Array) -> Array:
        """``(N, T, 1)`` audio -> ``(N, frames, num_mels)`` float32 features."""
        feats = audio_features.log_mel_spectrogram(
            audio.astype(jnp.float32), self.sample_rate, self.feature_config()
        )
        if self.normalize:
            mean = feats.mean(axis=1, keepdims=True)
            std = feats.std(axis=1, keepdims=True)
            feats = (feats - mean) / (std + 1e-5)
        return feats


class TDNN(nn.Module):
    """A time-delay network over log-mel frames (see the module docstring).

    Attributes:
      num_classes: output units (one row of the last layer per class).
      hidden: units of the hidden layers.
      context: frames each layer sees (``len(hidden) + 1`` entries, the last the
        output layer's).
      dilation: spacing of the frames each layer sees (1: consecutive frames).
      act: ``'relu'``, ``'sigmoid'`` (the paper) or ``'tanh'``.
      batch_norm: batch normalization before each hidden activation.
      dropout: dropout rate before the output layer.
      sample_rate: the audio's sample rate.
      num_mels: mel bands of the front end (the paper: 16).
      dtype: computation dtype.
    """

    num_classes: int = 10
    hidden: tuple[int, ...] = (8,)
    context: tuple[int, ...] = (3, 5)
    dilation: tuple[int, ...] | None = None
    act: str = "relu"
    batch_norm: bool = True
    dropout: float = 0.0
    sample_rate: int = 8000
    num_mels: int = 16
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_positive_ints(self.hidden, "hidden")
        check_positive_ints(self.context, "context")
        if len(self.context) != len(self.hidden) + 1:
            raise ValueError(
                f"`context` (={self.context!r}) needs one entry per hidden layer and one for "
                f"the output layer ({len(self.hidden) + 1}), `hidden`={self.hidden!r}"
            )
        if self.dilation is not None:
            check_positive_ints(self.dilation, "dilation")
            if len(self.dilation) != len(self.context):
                raise ValueError(
                    f"`dilation` (={self.dilation!r}) needs {len(self.context)} entries, "
                    f"one per entry of `context`"
                )
        check_choice(self.act, "act", tuple(_ACTS))
        check_rate(self.dropout, "dropout")
        check_positive_int(self.num_mels, "num_mels")
        super().__post_init__()

    def frames_seen(self) -> int:
        """The receptive field of one output frame, in frames."""
        dil = self.dilation or (1,) * len(self.context)
        return 1 + sum((k - 1) * d for k, d in zip(self.context, dil, strict=True))

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Classifies utterances.

        Args:
          x: mono audio ``(N, T, 1)``.
          train: batch statistics and dropout on.

        Returns:
          ``(logits (N, num_classes), features)``: ``features`` holds ``'log_mel'``
          (the front end's output), ``'layer_i'`` (each layer's frames) and
          ``'frame_logits'`` (the last layer before integration over time).
        """
        front = LogMelFrontEnd(sample_rate=self.sample_rate, num_mels=self.num_mels)
        fc = front.feature_config()
        frames = (self.frames_seen() - 1) * fc.hop_length + fc.frame_length
        check_audio_input(x, "TDNN", frames)
        feats: dict[str, Array] = {}
        h = front(x)
        feats["log_mel"] = h
        if self.dtype is not None:
            h = h.astype(self.dtype)
        dil = self.dilation or (1,) * len(self.context)
        act = _ACTS[self.act]
        for i, units in enumerate(self.hidden):
            h = Conv(
                units,
                self.context[i],
                padding="VALID",
                dilation=dil[i],
                use_bias=not self.batch_norm,
                dtype=self.dtype,
                name=f"tdnn_{i}",
            )(h)
            if self.batch_norm:
                h = BatchNorm(dtype=self.dtype, name=f"bn_{i}")(h, train=train)
            h = act(h)
            feats[f"layer_{i}"] = h
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        h = Conv(
            self.num_classes,
            self.context[-1],
            padding="VALID",
            dilation=dil[-1],
            dtype=self.dtype,
            name="output",
        )(h)
        feats["frame_logits"] = h
        logits = h.astype(jnp.float32).mean(axis=1)  # integration over time
        return logits, feats
