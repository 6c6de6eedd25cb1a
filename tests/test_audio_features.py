"""Log-mel and MFCC features against an independent numpy/scipy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import scipy.signal

from cnn_jax.data import audio_features as af

RNG = np.random.default_rng(0)


def _ref_hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def _ref_mel_to_hz(m: float) -> float:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _ref_filterbank(sr, n_fft, num_mels, fmin, fmax):
    """Triangles by an explicit loop over filters and bins (HTK mel, peak 1)."""
    lo, hi = _ref_hz_to_mel(fmin), _ref_hz_to_mel(fmax)
    pts = [_ref_mel_to_hz(lo + (hi - lo) * i / (num_mels + 1)) for i in range(num_mels + 2)]
    fb = np.zeros((n_fft // 2 + 1, num_mels))
    for m in range(num_mels):
        left, centre, right = pts[m], pts[m + 1], pts[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if left < f <= centre:
                fb[k, m] = (f - left) / (centre - left)
            elif centre < f < right:
                fb[k, m] = (right - f) / (right - centre)
    return fb


def _ref_features(audio, cfg: af.FeatureConfig):
    """(N, T) float64 audio -> (power, logmel, mfcc) with loops, scipy windows, np.fft."""
    win = scipy.signal.get_window(cfg.window, cfg.frame_length)  # periodic by default
    fmax = cfg.sample_rate / 2 if cfg.fmax is None else cfg.fmax
    fb = _ref_filterbank(cfg.sample_rate, cfg.n_fft, cfg.num_mels, cfg.fmin, fmax)
    powers = []
    for x in audio:
        rows = []
        start = 0
        while start + cfg.frame_length <= len(x):
            seg = np.zeros(cfg.n_fft)
            seg[: cfg.frame_length] = x[start : start + cfg.frame_length] * win
            rows.append(np.abs(np.fft.rfft(seg)) ** 2)
            start += cfg.hop_length
        powers.append(np.stack(rows))
    power = np.stack(powers)
    logmel = np.log(np.maximum(power @ fb, cfg.log_floor))
    mfcc = scipy.fft.dct(logmel, type=2, norm="ortho", axis=-1)[..., : cfg.num_mfcc]
    return power, logmel, mfcc


@pytest.mark.parametrize(
    "cfg",
    [
        af.FeatureConfig(),
        af.FeatureConfig(
            frame_length=160, hop_length=64, n_fft=512, window="hamming", num_mels=23,
            fmin=100.0, fmax=3800.0, num_mfcc=20,
        ),
        af.FeatureConfig(sample_rate=16000, frame_length=400, hop_length=160, n_fft=512),
    ],
)  # fmt: skip
def test_features_match_the_numpy_reference(cfg):
    length = 3 * cfg.sample_rate // 10 + 37
    audio = (RNG.standard_normal((3, length)) * 0.1).astype(np.float32)
    audio[1] *= np.sin(np.linspace(0, 40, length)).astype(np.float32)
    power, logmel, mfcc = _ref_features(audio.astype(np.float64), cfg)
    frames = af.num_frames(length, cfg.frame_length, cfg.hop_length)
    got_power = np.asarray(af.power_spectrogram(audio[..., None], cfg.sample_rate, cfg))
    got_logmel = np.asarray(af.log_mel_spectrogram(audio, cfg.sample_rate, cfg))
    got_mfcc = np.asarray(af.mfcc(audio[..., None], cfg.sample_rate, cfg))
    assert got_power.shape == (3, frames, cfg.n_fft // 2 + 1) == power.shape
    assert got_logmel.shape == (3, frames, cfg.num_mels)
    assert got_mfcc.shape == (3, frames, cfg.num_mfcc)
    np.testing.assert_allclose(got_power, power, rtol=2e-4, atol=1e-5 * power.max())
    np.testing.assert_allclose(got_logmel, logmel, rtol=0, atol=2e-3)
    np.testing.assert_allclose(got_mfcc, mfcc, rtol=0, atol=1e-2)


def test_filterbank_window_and_dct_against_references():
    cfg = af.FeatureConfig(num_mels=40, n_fft=512)
    fb = af.mel_filterbank(cfg)
    np.testing.assert_allclose(fb, _ref_filterbank(8000, 512, 40, 0.0, 4000.0), atol=1e-6)
    assert fb.min() == 0 and fb.max() <= 1 and np.all(fb.max(0) > 0.5)  # every filter sees a bin
    for name in af.WINDOWS:
        np.testing.assert_allclose(af.window(name, 200), scipy.signal.get_window(name, 200), 1e-6)
    x = RNG.standard_normal((5, 40))
    np.testing.assert_allclose(
        x @ af.dct_matrix(40, 13), scipy.fft.dct(x, norm="ortho")[:, :13], atol=1e-5
    )
    assert af.hz_to_mel(1000.0) == pytest.approx(999.98, abs=0.01)  # HTK: 1 kHz ~ 1000 mel
    assert af.mel_to_hz(af.hz_to_mel(1234.5)) == pytest.approx(1234.5)


def test_a_tone_lands_in_its_mel_band():
    cfg = af.FeatureConfig()
    t = np.arange(8000) / 8000.0
    tone = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)[None]
    logmel = np.asarray(af.log_mel_spectrogram(tone, 8000, cfg))
    centres = af.mel_to_hz(np.linspace(0, af.hz_to_mel(4000.0), cfg.num_mels + 2))[1:-1]
    assert np.all(np.abs(centres[logmel.argmax(-1)] - 1000.0) < 60.0)


def test_bad_inputs_name_the_argument():
    cfg = af.FeatureConfig()
    audio = np.zeros((2, 800), np.float32)
    with pytest.raises(ValueError, match=r"`sample_rate` \(=16000\).*config.sample_rate.*8000"):
        af.log_mel_spectrogram(audio, 16000, cfg)
    for bad in (np.zeros(800, np.float32), np.zeros((2, 800, 2), np.float32)):
        with pytest.raises(ValueError, match=r"`audio`.*\(N, T\) or \(N, T, 1\).*got shape"):
            af.mfcc(bad, 8000, cfg)
    with pytest.raises(ValueError, match=r"`audio` has 100 samples.*frame_length"):
        af.log_mel_spectrogram(np.zeros((1, 100), np.float32), 8000, cfg)
    with pytest.raises(TypeError, match=r"`audio` must hold floats"):
        af.log_mel_spectrogram(np.zeros((1, 800), np.int16), 8000, cfg)
    with pytest.raises(ValueError, match=r"`n_fft` \(=128\)"):
        af.FeatureConfig(n_fft=128)
    with pytest.raises(ValueError, match=r"`fmax` \(=5000"):
        af.FeatureConfig(fmax=5000.0)
    with pytest.raises(ValueError, match=r"`window` \(='blackman'\)"):
        af.FeatureConfig(window="blackman")
    with pytest.raises(ValueError, match=r"`num_mfcc` \(=50\)"):
        af.FeatureConfig(num_mfcc=50)
    with pytest.raises(ValueError, match=r"`hop_length` \(=0\)"):
        af.FeatureConfig(hop_length=0)
