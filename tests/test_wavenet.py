"""WaveNet: parameters, receptive field and causality from the Jacobian, a torch oracle,
the scorer and the loss, and errors that name the bad argument."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from cnn_jax import models
from cnn_jax.data.mulaw import mu_law_encode
from cnn_jax.models.wavenet import (
    WaveNet,
    dilation_stack,
    valid_mask,
    wavenet_num_params,
)
from cnn_jax.models.wavenet_scorer import WaveNetScorer
from cnn_jax.train.losses import get_loss
from cnn_jax.train.losses_sequence import sequence_nll_bits

SMALL = dict(residual_channels=4, gate_channels=3, skip_channels=5, quantization=8)


def _count(variables) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables))


def test_defaults_parameters_and_receptive_field():
    m = WaveNet(num_classes=10)
    assert m.dilations == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) * 2
    v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 64, 1)), label=jnp.zeros(1, int))
    assert _count(v) == wavenet_num_params(dilations=m.dilations, num_classes=10) == 266_496
    # input conv 2 + 2 x (1 + 2 + ... + 512) taps: 2,048 samples (256 ms at 8 kHz)
    assert m.receptive_field() == 2 + 2 * 1023 == 2048
    cond = WaveNet(kernel_size=3, input_kernel_size=4, num_classes=3, local_channels=6, **SMALL)
    v = cond.init(
        jax.random.key(0),
        jnp.zeros((1, 20, 1)),
        label=jnp.zeros(1, int),
        local=jnp.ones((1, 20, 6)),
    )
    assert _count(v) == wavenet_num_params(
        dilations=cond.dilations, kernel_size=3, input_kernel_size=4, num_classes=3,
        local_channels=6, **SMALL,
    )  # fmt: skip


@pytest.mark.parametrize(
    "kw", [dict(dilations=(1, 2, 4, 8, 1, 2, 4, 8)), dict(dilations=(1, 3, 9), kernel_size=3)]
)
def test_jacobian_causal_and_its_band_is_the_receptive_field(kw):
    m = WaveNet(**kw, **SMALL)
    t = 3 * m.receptive_field()
    x = jax.random.normal(jax.random.key(1), (1, t, 8))
    v = m.init(jax.random.key(0), x, method=WaveNet.logits_from_inputs)

    def out(x):  # the logits and the summed skips (before the output layers' ReLU)
        logits, skips = m.apply(v, x, method=WaveNet.logits_from_inputs)
        return jnp.concatenate([logits[0], skips[0]], axis=-1)

    jac = np.abs(np.asarray(jax.jacrev(out)(x)[:, :, 0]))  # (T_out, C_out, T_in, Q)
    assert not np.triu(jac.sum((1, 3)) > 0, 1).any()  # output t reads no input after t
    nz = jac[:, 8:].sum((1, 3)) > 0  # the skips: tanh * sigmoid, nowhere flat
    assert nz.diagonal().all()
    width = nz.sum(1)
    rf = m.receptive_field()
    assert rf == 2 + (m.kernel_size - 1) * sum(m.dilations)
    np.testing.assert_array_equal(width, np.minimum(np.arange(t) + 1, rf))


def _torch_forward(variables, model, onehot, label, local):
    """The network written again with torch.nn.functional (float64), weights copied."""
    p = jax.tree.map(lambda a: torch.from_numpy(np.array(a, np.float64)), variables["params"])
    x = torch.from_numpy(np.array(onehot, np.float64)).transpose(1, 2)  # (N, Q, T)

    def causal(x, w, b, d):  # w (k, C_in, C_out) HWIO -> torch (C_out, C_in, k)
        k = w.shape[0]
        x = torch.nn.functional.pad(x, (d * (k - 1), 0))
        return torch.nn.functional.conv1d(x, w.permute(2, 1, 0), b, dilation=d)

    h = causal(x, p["input_kernel"], p["input_bias"], 1)
    g = model.gate_channels
    skips = 0
    loc = torch.from_numpy(np.array(local, np.float64)).transpose(1, 2)
    for i, d in enumerate(model.dilations):
        b = p[f"block_{i}"]
        a = causal(h, b["dilated_kernel"], b["dilated_bias"], d)
        a = a + b["global_embedding"][torch.from_numpy(np.array(label))][:, :, None]
        a = a + torch.einsum("nft,fc->nct", loc, b["local_kernel"])
        z = torch.tanh(a[:, :g]) * torch.sigmoid(a[:, g:])
        skips = skips + torch.einsum("ngt,gs->nst", z, b["skip_kernel"]) + b["skip_bias"][:, None]
        if i < len(model.dilations) - 1:
            h = (
                h
                + torch.einsum("ngt,gr->nrt", z, b["residual_kernel"])
                + b["residual_bias"][:, None]
            )
    o = torch.relu(torch.einsum("nst,sc->nct", torch.relu(skips), p["output1_kernel"]))
    o = torch.relu(o + p["output1_bias"][:, None])
    o = torch.einsum("nst,sq->nqt", o, p["output2_kernel"]) + p["output2_bias"][:, None]
    return o.transpose(1, 2).numpy()


def test_matches_a_torch_reference_with_global_and_local_conditioning():
    m = WaveNet(dilations=(1, 2, 4, 1, 2, 4), num_classes=3, local_channels=2, local_upsample=5,
                **SMALL)  # fmt: skip
    n, t = 2, 37
    audio = jax.random.uniform(jax.random.key(2), (n, t, 1), minval=-0.9, maxval=0.9)
    label = jnp.array([2, 0])
    local = jax.random.normal(jax.random.key(3), (n, 8, 2))  # 8 frames x 5 >= 37
    v = m.init(jax.random.key(0), audio, label=label, local=local)
    logits, feats = m.apply(v, audio, label=label, local=local)
    codes = np.asarray(mu_law_encode(audio[..., 0], 7))
    np.testing.assert_array_equal(feats["codes"], codes)
    inputs = np.concatenate([np.full((n, 1), 4), codes[:, :-1]], 1)  # silence (mu = 7) first
    onehot = jax.nn.one_hot(inputs, 8)
    want = _torch_forward(v, m, onehot, label, np.repeat(np.asarray(local), 5, 1)[:, :t])
    np.testing.assert_allclose(np.asarray(logits), want, rtol=2e-5, atol=2e-5)


def test_scorer_and_loss_are_the_bits_per_sample_given_the_true_id():
    kw = dict(dilations=(1, 2, 4), num_classes=4, **SMALL)
    wn, sc = WaveNet(**kw), WaveNetScorer(**kw)
    audio = np.array(jax.random.uniform(jax.random.key(2), (3, 30, 1), minval=-1, maxval=1))
    audio[0, 20:] = 0.0  # zero padding after the recording
    audio[2, :] = 0.0
    label = jnp.array([3, 1, 0])
    v = wn.init(jax.random.key(0), audio, label=label)
    mask = np.asarray(valid_mask(jnp.asarray(audio)))
    np.testing.assert_array_equal(mask.sum(1), [20, 30, 1])
    logits, feats = wn.apply(v, audio, label=label)
    want = np.asarray(sequence_nll_bits(logits, feats["codes"], jnp.asarray(mask)))
    every, f_all = sc.apply(v, audio)  # evaluation: every id
    given, f_given = sc.apply(v, audio, label=label)  # training: the label's only
    assert every.shape == given.shape == (3, 4)
    idx = np.arange(3), np.asarray(label)
    np.testing.assert_allclose(-np.asarray(every)[idx], want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(given)[idx], np.asarray(every)[idx], rtol=1e-6)
    assert np.isinf(np.asarray(given)).sum() == 3 * 3
    loss = get_loss("wavenet_nll")
    assert loss.label_to_model
    for out, f in ((every, f_all), (given, f_given)):
        losses, correct = loss.fn(out, f, {"label": label})
        np.testing.assert_allclose(np.asarray(losses), want, rtol=1e-5)
        assert np.all((np.asarray(correct) >= 0) & (np.asarray(correct) <= 1))
    # bits per sample of a uniform prediction is log2(Q)
    np.testing.assert_allclose(
        sequence_nll_bits(jnp.zeros((1, 5, 8)), jnp.zeros((1, 5), int)), [3.0], rtol=1e-6
    )


def test_registered():
    assert models.model_class("wavenet") is WaveNet
    assert models.model_class("wavenet_scorer") is WaveNetScorer
    assert dilation_stack(3, 2) == (1, 2, 4, 1, 2, 4)


def test_bad_inputs_raise_naming_them():
    m = WaveNet(num_classes=2, **SMALL)
    ok = jnp.zeros((2, 10, 1))
    v = m.init(jax.random.key(0), ok, label=jnp.zeros(2, int))
    with pytest.raises(ValueError, match=r"`x` audio of shape \(N, T, 1\), got shape \(2, 10\)"):
        m.apply(v, jnp.zeros((2, 10)), label=jnp.zeros(2, int))
    with pytest.raises(ValueError, match=r"`x`.*\(2, 10, 2\)"):
        m.apply(v, jnp.zeros((2, 10, 2)), label=jnp.zeros(2, int))
    with pytest.raises(TypeError, match=r"`x`.*int32"):
        m.apply(v, jnp.zeros((2, 10, 1), jnp.int32), label=jnp.zeros(2, int))
    with pytest.raises(ValueError, match="needs `label`"):
        m.apply(v, ok)
    with pytest.raises(ValueError, match=r"`label` must be \(2,\)"):
        m.apply(v, ok, label=jnp.zeros(3, int))
    with pytest.raises(ValueError, match="`local` given"):
        m.apply(v, ok, label=jnp.zeros(2, int), local=jnp.zeros((2, 10, 1)))
    loc = WaveNet(local_channels=3, local_upsample=4, **SMALL)
    with pytest.raises(ValueError, match=r"`local` has 2 frames.*fewer than the audio's 10"):
        loc.init(jax.random.key(0), ok, local=jnp.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"`local` must be \(2, frames, 3\)"):
        loc.init(jax.random.key(0), ok, local=jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"`dilations` \(=\(1, 0\)\)"):
        WaveNet(dilations=(1, 0))
    for bad in (-1, 0):
        with pytest.raises(ValueError, match=rf"`num_classes` \(={bad}\)"):
            WaveNet(num_classes=bad)
    with pytest.raises(ValueError, match=r"`quantization` \(=1\)"):
        WaveNet(quantization=1)
