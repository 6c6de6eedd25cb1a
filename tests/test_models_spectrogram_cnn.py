"""The spectrogram CNN: parameter count, shapes, features, bad inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.models.spectrogram_cnn import SpectrogramCNN


def test_parameters_shapes_and_features():
    model = models.get_model("spectrogram_cnn")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 2400, 1)) * 0.1, jnp.float32)
    v = jax.jit(model.init)(jax.random.key(0), x)
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v["params"]))
    widths, convs, c_in = (16, 32, 64), 0, 1
    for w in widths:
        convs += 9 * c_in * w + 9 * w * w + 2 * 2 * w  # two 3x3 convs + their BN scale/offset
        c_in = w
    assert n == convs + 64 * 10 + 10 == 72_666
    logits, feats = jax.jit(model.apply)(v, x)
    assert logits.shape == (2, 10) and feats["log_mel"].shape == (2, 28, 40)
    assert feats["block_2"].shape == (2, 3, 5, 64)
    out, state = model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)},
                             mutable=["batch_stats"])  # fmt: skip
    assert out[0].shape == (2, 10) and "batch_stats" in state


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"SpectrogramCNN expects mono audio `x`"):
        SpectrogramCNN().init(jax.random.key(0), jnp.zeros((1, 8000, 2)))
    with pytest.raises(ValueError, match=r"at least 760 samples"):
        SpectrogramCNN().init(jax.random.key(0), jnp.zeros((1, 500, 1)))
    with pytest.raises(ValueError, match=r"`num_mels` \(=4\)"):
        SpectrogramCNN(num_mels=4)
    with pytest.raises(ValueError, match=r"`widths`"):
        SpectrogramCNN(widths=())
    with pytest.raises(ValueError, match=r"`dropout` \(=1.5\)"):
        SpectrogramCNN(dropout=1.5)
