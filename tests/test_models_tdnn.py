"""TDNN: the paper's size, a numpy reference forward pass, receptive field, bad inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.data import audio_features as af
from cnn_jax.models.tdnn import TDNN, LogMelFrontEnd


def _count(variables) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))


def _audio(n: int, samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 8000.0
    tone = np.sin(2 * np.pi * rng.uniform(200, 3000, (n, 1)) * t)
    return (0.3 * tone + 0.05 * rng.standard_normal((n, samples)))[..., None].astype(np.float32)


def test_paper_network_has_the_papers_weights():
    # Waibel et al. (1989): 16 coefficients; 8 units x delays 0-2; 3 units x delays 0-4.
    model = TDNN(num_classes=3, num_mels=16, hidden=(8,), context=(3, 5), act="sigmoid",
                 batch_norm=False)  # fmt: skip
    v = model.init(jax.random.key(0), jnp.zeros((1, 800, 1)))
    assert _count(v) == (16 * 3 * 8 + 8) + (8 * 5 * 3 + 3) == 515
    assert model.frames_seen() == 7
    assert models.get_model("tdnn", num_classes=3).frames_seen() == 7
    wide = TDNN(hidden=(96, 96, 96), context=(5, 3, 3, 1), dilation=(1, 2, 3, 1), num_mels=40)
    v = jax.eval_shape(wide.init, jax.random.key(0), jnp.zeros((1, 2400, 1)))
    conv = 40 * 5 * 96 + 2 * 96 * 3 * 96 + 96 * 10 + 10
    assert _count(v) == conv + 3 * 2 * 96  # + batch-norm scales and offsets
    assert wide.frames_seen() == 15


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_forward_matches_a_numpy_time_delay_reference():
    model = TDNN(num_classes=4, num_mels=16, hidden=(8, 6), context=(3, 5, 2),
                 dilation=(1, 2, 1), act="sigmoid", batch_norm=False)  # fmt: skip
    x = _audio(2, 2400)
    v = model.init(jax.random.key(1), x)
    logits, feats = model.apply(v, x)
    p = jax.tree.map(np.asarray, v["params"])
    # The front end is the log-mel of audio_features, normalized per band.
    cfg = af.FeatureConfig(num_mels=16, num_mfcc=1)
    mel = np.asarray(af.log_mel_spectrogram(x, 8000, cfg), np.float64)
    mel = (mel - mel.mean(1, keepdims=True)) / (mel.std(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(feats["log_mel"], mel, atol=1e-4)

    def layer(h, kernel, bias, dil, act):
        k = kernel.shape[0]
        steps = h.shape[1] - (k - 1) * dil
        out = np.zeros((h.shape[0], steps, kernel.shape[-1]))
        for n in range(h.shape[0]):
            for t in range(steps):  # the same weights at every time step
                for j in range(k):
                    out[n, t] += h[n, t + j * dil] @ kernel[j]
        return act(out + bias)

    h = layer(mel, p["tdnn_0"]["kernel"], p["tdnn_0"]["bias"], 1, _sigmoid)
    h = layer(h, p["tdnn_1"]["kernel"], p["tdnn_1"]["bias"], 2, _sigmoid)
    out = layer(h, p["output"]["kernel"], p["output"]["bias"], 1, lambda z: z)
    np.testing.assert_allclose(feats["frame_logits"], out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits, out.mean(1), rtol=1e-4, atol=1e-4)  # integration


def test_each_output_frame_sees_frames_seen_input_frames():
    model = TDNN(num_mels=8, hidden=(4, 4), context=(3, 3, 2), dilation=(1, 2, 1))
    x = _audio(1, 2400)
    v = model.init(jax.random.key(0), x)
    mel = model.apply(v, x)[1]["log_mel"]

    def frame_logit(mel_in, t):
        # Re-run the layers on a given log-mel input (the front end has no parameters).
        def body(m):
            h = m
            for i, name in enumerate(("tdnn_0", "tdnn_1", "output")):
                h = jax.lax.conv_general_dilated(
                    h, v["params"][name]["kernel"], (1,), "VALID",
                    rhs_dilation=(model.dilation[i],), dimension_numbers=("NWC", "WIO", "NWC"),
                )  # fmt: skip
            return h[0, t].sum()

        return jax.grad(body)(mel_in)

    grad = np.asarray(frame_logit(mel, 10))
    touched = np.flatnonzero(np.abs(grad).sum(-1) > 0)
    assert touched.min() == 10 and touched.max() == 10 + model.frames_seen() - 1
    assert model.frames_seen() == 1 + 2 + 4 + 1


def test_front_end_and_sample_rate_checks():
    x = _audio(2, 2400)
    out = LogMelFrontEnd(num_mels=20).apply({}, x)
    assert out.shape == (2, af.num_frames(2400, 200, 80), 20)
    np.testing.assert_allclose(np.asarray(out).mean(1), 0.0, atol=1e-4)
    with pytest.raises(ValueError, match=r"`n_fft` \(=100\)"):
        LogMelFrontEnd(n_fft=100).apply({}, x)


def test_bad_inputs_name_the_argument():
    model = TDNN()
    with pytest.raises(ValueError, match=r"TDNN expects mono audio `x` of shape \(N, T, 1\)"):
        model.init(jax.random.key(0), jnp.zeros((1, 8000)))
    with pytest.raises(ValueError, match=r"at least 680 samples"):
        model.init(jax.random.key(0), jnp.zeros((1, 400, 1)))
    with pytest.raises(ValueError, match=r"`context` \(=\(3,\)\)"):
        TDNN(context=(3,))
    with pytest.raises(ValueError, match=r"`dilation` \(=\(1,\)\)"):
        TDNN(dilation=(1,))
    with pytest.raises(ValueError, match=r"`act` \(='gelu'\)"):
        TDNN(act="gelu")
    with pytest.raises(ValueError, match=r"`hidden`"):
        TDNN(hidden=(0,))
