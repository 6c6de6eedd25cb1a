"""ZCA/PCA whitening and AlexNet's PCA colour noise against numpy."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from cnn_jax import data
from cnn_jax.data import whitening
from cnn_jax.data.pipeline import input_pipeline


def _images(n=400, shape=(4, 4, 3), seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(np.prod(shape), np.prod(shape)))
    x = rng.normal(size=(n, np.prod(shape))) @ mix * 0.05 + 0.5  # correlated pixels
    return np.clip(x, 0, 1).reshape(n, *shape).astype(np.float32)


def test_zca_gives_identity_covariance_and_matches_numpy():
    x = _images()
    w = whitening.fit_whitening(x, "zca", eps=0.0)
    y = w(x).reshape(len(x), -1).astype(np.float64)
    cov = np.cov(y, rowvar=False, bias=True)
    np.testing.assert_allclose(cov, np.eye(48), atol=2e-3)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
    # Reference: numpy's SVD of the centred data.
    flat = x.reshape(len(x), -1).astype(np.float64)
    xc = flat - flat.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    zca = vt.T @ np.diag(1 / (s / np.sqrt(len(x)))) @ vt
    np.testing.assert_allclose(y, xc @ zca.T, atol=2e-3)
    # ZCA is symmetric; the whitened images keep their shape.
    np.testing.assert_allclose(w.matrix, w.matrix.T, atol=1e-4)
    assert w(x[:3]).shape == (3, 4, 4, 3)
    np.testing.assert_allclose(w.eigenvalues[:5], (s**2 / len(x))[:5], rtol=1e-6)


def test_pca_whitening_components_and_eps():
    x = _images()
    w = whitening.fit_whitening(x, "pca", eps=0.0, components=10)
    y = w(x).astype(np.float64)
    assert y.shape == (400, 10)
    np.testing.assert_allclose(np.cov(y, rowvar=False, bias=True), np.eye(10), atol=2e-3)
    # eps damps: variance s / (s + eps) along each eigenvector.
    w = whitening.fit_whitening(x, "pca", eps=0.01)
    var = w(x).astype(np.float64).var(0)
    np.testing.assert_allclose(var, w.eigenvalues / (w.eigenvalues + 0.01), atol=2e-3)


def test_whitening_bad_inputs():
    x = _images()
    with pytest.raises(ValueError, match="kind"):
        whitening.fit_whitening(x, "pcaa")
    with pytest.raises(ValueError, match="eps"):
        whitening.fit_whitening(x, eps=-1.0)
    with pytest.raises(ValueError, match="components"):
        whitening.fit_whitening(x, "zca", components=3)
    with pytest.raises(ValueError, match="singular"):
        whitening.fit_whitening(x[:10], eps=0.0)  # 10 images, 48 pixels
    with pytest.raises(ValueError, match="images"):
        whitening.fit_whitening(x[0])
    w = whitening.fit_whitening(x)
    with pytest.raises(ValueError, match="do not match"):
        w(np.zeros((2, 5, 5, 3), np.uint8))


def test_colour_pca_and_noise_against_numpy():
    x = _images(n=50, shape=(6, 6, 3))
    lam, vec = whitening.colour_pca(x)
    pix = x.reshape(-1, 3).astype(np.float64)
    s, u = np.linalg.eigh(np.cov(pix, rowvar=False, bias=True))
    np.testing.assert_allclose(lam, s[::-1], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.abs(vec), np.abs(u[:, ::-1]), atol=1e-6)
    key = jax.random.key(3)
    out = np.asarray(whitening.pca_colour_noise(x, key, std=0.1, eigenvalues=lam, eigenvectors=vec))
    alpha = 0.1 * np.asarray(jax.random.normal(key, (50, 3)))
    want = x + np.einsum("ij,nj->ni", vec, alpha * lam)[:, None, None, :]
    np.testing.assert_allclose(out, want, atol=1e-6)
    # One shift per image, the same at every pixel.
    d = out - x
    np.testing.assert_allclose(d, np.broadcast_to(d[:, :1, :1], d.shape), atol=1e-6)
    assert "pca_colour_noise" in data.augmentation_names()
    with pytest.raises(ValueError, match="3 channels"):
        whitening.pca_colour_noise(np.zeros((2, 4, 4, 1), np.float32), key)
    with pytest.raises(ValueError, match="std"):
        whitening.pca_colour_noise(x, key, std=-1.0)


def test_zca_normalization_in_the_pipeline():
    x = (_images(n=64, shape=(4, 4, 3)) * 255).astype(np.uint8)
    arrays = {"image": x, "label": np.zeros(64, np.int32)}
    config = {"dataset": "synthetic", "batch_size": 64, "normalization": "zca", "shuffle": False}
    it = input_pipeline(config, "train", rng_seed=0, data=arrays)
    batch = it.batch_at(0)
    want = whitening.fit_whitening(x)(x)
    np.testing.assert_allclose(batch["image"], want, atol=1e-5)
