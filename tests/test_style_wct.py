"""cnn_jax.style.wct: whitening and colouring transform, decoders, the training model.

The VGG-19 encoder has torchvision's initialization (flax's init with the same
scheme); no ImageNet weights are available offline.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.style import wct as wct_lib


def _features(seed, h, w, c, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(c, c)) * scale
    return (rng.normal(size=(h, w, c)) @ mix + shift).astype(np.float32)


def test_covariance_against_numpy():
    f = _features(0, 5, 6, 4)
    mean, cov = wct_lib.feature_covariance(jnp.asarray(f))
    np.testing.assert_allclose(mean, f.reshape(-1, 4).mean(0), atol=1e-5)
    np.testing.assert_allclose(cov, np.cov(f.reshape(-1, 4).T), rtol=1e-4, atol=1e-5)


def test_wct_output_has_the_style_mean_and_covariance():
    content = _features(1, 12, 10, 8)
    style = _features(2, 9, 11, 8, scale=3.0, shift=2.0)
    out = np.asarray(wct_lib.wct(jnp.asarray(content), jnp.asarray(style), eps=1e-8), np.float64)
    flat_s = style.reshape(-1, 8).astype(np.float64)
    np.testing.assert_allclose(out.reshape(-1, 8).mean(0), flat_s.mean(0), atol=1e-3)
    np.testing.assert_allclose(
        np.cov(out.reshape(-1, 8).T),
        np.cov(flat_s.T),
        rtol=2e-3,
        atol=2e-3 * np.abs(np.cov(flat_s.T)).max(),
    )
    # the content's own statistics give the content back
    identity = wct_lib.wct(jnp.asarray(content), jnp.asarray(content), eps=1e-8)
    np.testing.assert_allclose(identity, content, atol=1e-3)
    # alpha = 0 leaves the content unchanged
    np.testing.assert_allclose(wct_lib.wct(jnp.asarray(content), jnp.asarray(style), 0.0), content)


def test_wct_bad_arguments():
    with pytest.raises(ValueError, match="one C"):
        wct_lib.wct(jnp.zeros((4, 4, 3)), jnp.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="alpha"):
        wct_lib.wct(jnp.zeros((4, 4, 3)), jnp.zeros((4, 4, 3)), alpha=1.5)
    with pytest.raises(ValueError, match="level"):
        wct_lib.WCTDecoder(level=6)


@pytest.mark.parametrize(
    ("level", "params"),
    # Li et al.'s decoders (mirrored VGG-19, 3x3 convolutions): 64*3*9+3 = 1,731 for relu1_1
    [(1, 1_731), (2, 112_451), (3, 555_075), (4, 3_505_219), (5, 12_944_451)],
)
def test_decoder_shapes_and_parameter_counts(level, params):
    model = wct_lib.WCTAutoencoder(level=level, upscale=2)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]["decoder"]))
    assert n == params
    logits, feats = jax.eval_shape(model.apply, variables, jnp.zeros((2, 16, 16, 3)))
    assert logits.shape == (2, 0)
    assert feats["reconstruction"].shape == (2, 32, 32, 3) == feats["target"].shape
    assert feats["encoded"].shape == feats["reencoded"].shape
    assert feats["encoded"].shape[1] == 32 // 2 ** (level - 1)


def test_encoder_is_frozen_and_loss_is_zero_for_a_perfect_reconstruction():
    model = wct_lib.WCTAutoencoder(level=2, upscale=1)
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)

    def loss(p):
        return wct_lib.reconstruction_loss(model.apply({"params": p}, x)[1]).sum()

    g = jax.grad(loss)(variables["params"])
    assert all(float(jnp.abs(v).max()) == 0 for v in jax.tree.leaves(g["encoder"]))
    assert any(float(jnp.abs(v).max()) > 0 for v in jax.tree.leaves(g["decoder"]))
    _, feats = model.apply(variables, x)
    perfect = {**feats, "reencoded": feats["encoded"], "reconstruction": feats["target"]}
    np.testing.assert_allclose(wct_lib.reconstruction_loss(perfect), 0.0)


def test_universal_stylize_runs_every_level():
    enc = wct_lib.WCTAutoencoder(level=2, upscale=1)
    x = jnp.zeros((1, 16, 16, 3))
    v = enc.init(jax.random.key(0), x)["params"]
    dec1 = wct_lib.WCTAutoencoder(level=1, upscale=1).init(jax.random.key(1), x)["params"][
        "decoder"
    ]
    c = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    s = np.random.default_rng(1).random((12, 20, 3)).astype(np.float32)
    out = wct_lib.universal_stylize(v["encoder"], {2: v["decoder"], 1: dec1}, c, s, levels=(2, 1))
    assert out.shape == (16, 16, 3) and float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError, match="lack the levels"):
        wct_lib.universal_stylize(v["encoder"], {1: dec1}, c, s, levels=(2, 1))


def test_registries_and_runlocal_training_lowers_the_loss(tmp_path):
    """The decoder trains through the loop (config.loss='wct_reconstruction'), encoder frozen."""
    import json

    from cnn_jax import models
    from cnn_jax.train import train_and_evaluate
    from cnn_jax.train.losses import get_loss
    from experiments.configs import wct_decoder_cifar10

    assert models.model_class("wct_autoencoder") is wct_lib.WCTAutoencoder
    assert get_loss("wct_reconstruction").fn is wct_lib.reconstruction_loss_fn
    with pytest.raises(ValueError, match="num_classes"):
        models.get_model("wct_autoencoder", num_classes=0)
    assert wct_decoder_cifar10.get_config("relu3,cpu").model_kwargs.level == 3
    with pytest.raises(ValueError, match="one level"):
        wct_decoder_cifar10.get_config("relu1,relu2")
    c = wct_decoder_cifar10.get_config("runlocal,relu2")
    c.num_train_steps = 10
    c.log_every_steps = 1
    c.optim.learning_rate = 3e-3
    summary = train_and_evaluate(c, str(tmp_path))
    assert summary["steps"] == 10
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert np.isfinite(summary["test_loss"])
