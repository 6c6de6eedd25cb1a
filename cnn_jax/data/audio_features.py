"""Log-mel spectrograms and MFCCs of batches of waveforms, in JAX.

The pipeline, each step a function of its own:

1. :func:`frame`: overlapping frames of ``frame_length`` samples every ``hop_length``
   samples (no centring: frame ``t`` starts at sample ``t * hop_length``, and only
   whole frames are kept, ``1 + (T - frame_length) // hop_length`` of them).
2. :func:`window`: a Hann (periodic, as ``scipy.signal.get_window('hann', n)``) or
   Hamming window over each frame, zero-padded on the right to ``n_fft``.
3. :func:`power_spectrogram`: ``|rfft(frame)|^2``, ``n_fft // 2 + 1`` bins from 0 Hz to
   the Nyquist frequency.
4. :func:`mel_filterbank`: triangular filters equally spaced on the HTK mel scale
   ``mel(f) = 2595 log10(1 + f / 700)`` between ``fmin`` and ``fmax``, peak 1 (no area
   normalization: ``librosa.filters.mel(htk=True, norm=None)``).
5. :func:`log_mel_spectrogram`: ``log(max(power @ filterbank, log_floor))``.
6. :func:`mfcc`: the orthonormal DCT-II (``scipy.fft.dct(norm='ortho')``) of the log-mel
   spectrogram along the mel axis, its first ``num_mfcc`` coefficients.

Audio is channels-last and mono: ``(N, T)`` or ``(N, T, 1)`` float waveforms (FSDD's
``audio`` arrays are ``(N, T, 1)`` in ``[-1, 1)``). Features are ``(N, frames, bins)``:
time on axis 1, so a TDNN convolves over axis 1 and a 2-D CNN reads them as a one-channel
image after ``[..., None]``. The sample rate the audio was recorded at must be passed
and must equal :attr:`FeatureConfig.sample_rate`: the frequencies of the mel filters
are only right at that rate (resample first otherwise).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import jax.numpy as jnp
import numpy as np

from cnn_jax.ops._validate import is_int

__all__ = [
    "WINDOWS",
    "FeatureConfig",
    "dct_matrix",
    "frame",
    "hz_to_mel",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_to_hz",
    "mfcc",
    "num_frames",
    "power_spectrogram",
    "window",
]

Array = Any

#: Values of ``FeatureConfig.window``.
WINDOWS = ("hann", "hamming")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """The parameters of the features (defaults: 25 ms frames every 10 ms at 8 kHz).

    Attributes:
      sample_rate: the rate the audio must have, in Hz.
      frame_length: samples per frame (the window's length).
      hop_length: samples between the starts of consecutive frames.
      n_fft: the FFT size, at least ``frame_length`` (frames are zero-padded).
      window: ``'hann'`` or ``'hamming'``.
      num_mels: mel filters.
      fmin: the lowest filter's lower edge, in Hz.
      fmax: the highest filter's upper edge, in Hz (None: ``sample_rate / 2``).
      log_floor: mel energies are clipped below at this before the logarithm.
      num_mfcc: the DCT coefficients :func:`mfcc` keeps.
    """

    sample_rate: int = 8000
    frame_length: int = 200
    hop_length: int = 80
    n_fft: int = 256
    window: str = "hann"
    num_mels: int = 40
    fmin: float = 0.0
    fmax: float | None = None
    log_floor: float = 1e-6
    num_mfcc: int = 13

    def __post_init__(self) -> None:
        for name in ("sample_rate", "frame_length", "hop_length", "n_fft", "num_mels", "num_mfcc"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"`{name}` (={value!r}) must be a positive int")
        if self.n_fft < self.frame_length:
            raise ValueError(
                f"`n_fft` (={self.n_fft}) must be at least `frame_length` (={self.frame_length})"
            )
        if self.window not in WINDOWS:
            raise ValueError(f"`window` (={self.window!r}) must be one of {WINDOWS}")
        if self.num_mfcc > self.num_mels:
            raise ValueError(
                f"`num_mfcc` (={self.num_mfcc}) must be at most `num_mels` (={self.num_mels})"
            )
        nyquist = self.sample_rate / 2
        for name in ("fmin", "log_floor") + (("fmax",) if self.fmax is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"`{name}` (={value!r}) must be a number")
        if not 0 <= self.fmin < self.upper_frequency <= nyquist:
            raise ValueError(
                f"need 0 <= `fmin` (={self.fmin!r}) < `fmax` (={self.fmax!r}) <= "
                f"sample_rate / 2 (={nyquist:g})"
            )
        if not self.log_floor > 0:
            raise ValueError(f"`log_floor` (={self.log_floor!r}) must be positive")

    @property
    def upper_frequency(self) -> float:
        """``fmax``, or the Nyquist frequency if it is None."""
        return float(self.sample_rate / 2 if self.fmax is None else self.fmax)

    @property
    def num_bins(self) -> int:
        """Frequency bins of the power spectrogram, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1


def _check_audio(audio: Any, sample_rate: Any, config: FeatureConfig) -> Array:
    """``audio`` as a float ``(N, T)`` array; errors name the argument and its value."""
    if not isinstance(config, FeatureConfig):
        raise TypeError(f"`config` must be a FeatureConfig, got {type(config).__name__}")
    if not is_int(sample_rate) or sample_rate != config.sample_rate:
        raise ValueError(
            f"`sample_rate` (={sample_rate!r}) does not match the features' "
            f"`config.sample_rate` (={config.sample_rate}); resample the audio or build "
            "the features for its rate"
        )
    shape = getattr(audio, "shape", None)
    if shape is None:
        raise TypeError(f"`audio` must be an array, got {type(audio).__name__}")
    if len(shape) == 3 and shape[-1] == 1:
        audio = audio[..., 0]
    elif len(shape) != 2:
        raise ValueError(
            f"`audio` must have shape (N, T) or (N, T, 1) (mono, channels last), "
            f"got shape {tuple(shape)}"
        )
    if audio.shape[1] < config.frame_length:
        raise ValueError(
            f"`audio` has {audio.shape[1]} samples (shape {tuple(shape)}), fewer than "
            f"one frame (`frame_length`={config.frame_length})"
        )
    audio = jnp.asarray(audio)
    if not jnp.issubdtype(audio.dtype, jnp.floating):
        raise TypeError(f"`audio` must hold floats (waveforms), got dtype {audio.dtype}")
    return audio


def num_frames(num_samples: int, frame_length: int, hop_length: int) -> int:
    """Whole frames in ``num_samples`` samples: ``1 + (num_samples - frame_length) // hop``."""
    if num_samples < frame_length:
        raise ValueError(
            f"`num_samples` (={num_samples}) must be at least `frame_length` (={frame_length})"
        )
    return 1 + (num_samples - frame_length) // hop_length


def frame(signal: Array, frame_length: int, hop_length: int) -> Array:
    """Overlapping frames along the last axis.

    Args:
      signal: ``(..., T)``.
      frame_length: samples per frame.
      hop_length: samples between frame starts.

    Returns:
      ``(..., frames, frame_length)``, frame ``t`` being ``signal[..., t*hop : t*hop+len]``.
    """
    count = num_frames(signal.shape[-1], frame_length, hop_length)
    index = np.arange(count)[:, None] * hop_length + np.arange(frame_length)[None, :]
    return signal[..., index]


def window(name: str, length: int) -> np.ndarray:
    """The periodic (FFT) Hann or Hamming window of ``length`` samples, float32.

    Raises:
      ValueError: for an unknown ``name`` or a non-positive ``length``.
    """
    if name not in WINDOWS:
        raise ValueError(f"`window` (={name!r}) must be one of {WINDOWS}")
    if not is_int(length) or length < 1:
        raise ValueError(f"`length` (={length!r}) must be a positive int")
    phase = 2.0 * np.pi * np.arange(length) / length
    a = 0.5 if name == "hann" else 0.54
    return (a - (1.0 - a) * np.cos(phase)).astype(np.float32)


def power_spectrogram(audio: Array, sample_rate: int, config: FeatureConfig) -> Array:
    """``|STFT|^2`` of mono waveforms.

    Args:
      audio: ``(N, T)`` or ``(N, T, 1)`` float waveforms.
      sample_rate: their rate in Hz; must equal ``config.sample_rate``.
      config: the feature parameters.

    Returns:
      float32 ``(N, frames, n_fft // 2 + 1)``.

    Raises:
      ValueError: for audio of another rank, shorter than one frame, or a sample rate
        other than ``config.sample_rate``.
      TypeError: for non-float audio.
    """
    audio = _check_audio(audio, sample_rate, config).astype(jnp.float32)
    frames = frame(audio, config.frame_length, config.hop_length)
    frames = frames * jnp.asarray(window(config.window, config.frame_length))
    spectrum = jnp.fft.rfft(frames, n=config.n_fft, axis=-1)
    return (jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2).astype(jnp.float32)


def hz_to_mel(hz: Any) -> Any:
    """The HTK mel scale, ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: Any) -> Any:
    """The inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Triangular mel filters as a ``(n_fft // 2 + 1, num_mels)`` float32 matrix.

    Filter ``m`` rises linearly from 0 at ``f[m]`` to 1 at ``f[m + 1]`` and falls to 0 at
    ``f[m + 2]``, where ``f`` are ``num_mels + 2`` frequencies equally spaced in mel from
    ``fmin`` to ``fmax``; it is evaluated at the FFT bins' frequencies
    ``k * sample_rate / n_fft``.
    """
    edges = mel_to_hz(
        np.linspace(hz_to_mel(config.fmin), hz_to_mel(config.upper_frequency), config.num_mels + 2)
    )
    freqs = np.arange(config.num_bins) * config.sample_rate / config.n_fft
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel_spectrogram(
    audio: Array, sample_rate: int, config: FeatureConfig = FeatureConfig()
) -> Array:
    """The log-mel spectrogram, ``log(max(power @ mel_filterbank, log_floor))``.

    Args:
      audio: ``(N, T)`` or ``(N, T, 1)`` float waveforms.
      sample_rate: their rate in Hz; must equal ``config.sample_rate``.
      config: the feature parameters.

    Returns:
      float32 ``(N, frames, num_mels)``, ``frames = 1 + (T - frame_length) // hop_length``.

    Raises:
      ValueError, TypeError: as :func:`power_spectrogram`.
    """
    power = power_spectrogram(audio, sample_rate, config)
    mel = jnp.matmul(power, jnp.asarray(mel_filterbank(config)), precision="highest")
    return jnp.log(jnp.maximum(mel, config.log_floor))


def dct_matrix(num_inputs: int, num_outputs: int) -> np.ndarray:
    """The orthonormal DCT-II as a ``(num_inputs, num_outputs)`` float32 matrix.

    ``x @ dct_matrix(n, k)`` is ``scipy.fft.dct(x, type=2, norm='ortho')[..., :k]``.
    """
    if not is_int(num_inputs) or num_inputs < 1:
        raise ValueError(f"`num_inputs` (={num_inputs!r}) must be a positive int")
    if not is_int(num_outputs) or not 1 <= num_outputs <= num_inputs:
        raise ValueError(f"`num_outputs` (={num_outputs!r}) must be an int in [1, {num_inputs}]")
    n = np.arange(num_inputs)[:, None]
    k = np.arange(num_outputs)[None, :]
    basis = np.cos(math.pi * k * (2 * n + 1) / (2 * num_inputs)) * math.sqrt(2.0 / num_inputs)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.astype(np.float32)


def mfcc(audio: Array, sample_rate: int, config: FeatureConfig = FeatureConfig()) -> Array:
    """Mel-frequency cepstral coefficients: the DCT-II of :func:`log_mel_spectrogram`.

    Args:
      audio: ``(N, T)`` or ``(N, T, 1)`` float waveforms.
      sample_rate: their rate in Hz; must equal ``config.sample_rate``.
      config: the feature parameters (``num_mfcc`` coefficients are kept).

    Returns:
      float32 ``(N, frames, num_mfcc)``.

    Raises:
      ValueError, TypeError: as :func:`power_spectrogram`.
    """
    logmel = log_mel_spectrogram(audio, sample_rate, config)
    basis = jnp.asarray(dct_matrix(config.num_mels, config.num_mfcc))
    return jnp.matmul(logmel, basis, precision="highest")
