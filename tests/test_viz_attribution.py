"""Saliency against finite differences, occlusion against a manual loop, top-k, confusion,
metrics reading and the figures (smoke: a PNG is written)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.viz import analysis, attribution, plots


def _score_fn(rng):
    """A small smooth network: conv -> tanh -> dense, float32."""
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 4)) * 0.5, jnp.float32)
    d = jnp.asarray(rng.normal(size=(6 * 6 * 4, 3)) * 0.2, jnp.float32)

    def score(x):
        h = jax.lax.conv_general_dilated(
            x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.tanh(h).reshape(x.shape[0], -1) @ d

    return score


def test_saliency_equals_central_differences(rng):
    score = _score_fn(rng)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 2)), jnp.float32)
    target = np.array([2, 0])
    smap, grad = attribution.saliency(score, x, target)
    assert smap.shape == (2, 8, 8) and grad.shape == x.shape
    np.testing.assert_allclose(smap, np.abs(np.asarray(grad)).max(-1))
    eps = 1e-2
    xs = np.asarray(x, np.float64)
    for n, i, j, c in [(0, 0, 0, 0), (0, 3, 4, 1), (1, 7, 7, 0), (1, 2, 5, 1), (0, 5, 1, 1)]:
        plus, minus = xs.copy(), xs.copy()
        plus[n, i, j, c] += eps
        minus[n, i, j, c] -= eps
        fd = (
            score(jnp.asarray(plus, jnp.float32))[n, target[n]]
            - score(jnp.asarray(minus, jnp.float32))[n, target[n]]
        ) / (2 * eps)
        np.testing.assert_allclose(grad[n, i, j, c], fd, rtol=2e-2, atol=2e-3)


def test_occlusion_equals_a_manual_loop(rng):
    score = _score_fn(rng)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 2)), jnp.float32)
    got = attribution.occlusion(score, x, 1, patch=3, stride=2, value=0.5, batch_size=7)
    positions = [0, 2, 4, 5]  # every 2, the last flush with the edge (8 - 3 = 5)
    assert attribution.occlusion_positions(8, 3, 2) == positions
    want = np.zeros((2, 4, 4))
    for n in range(2):
        for a, r in enumerate(positions):
            for b, c in enumerate(positions):
                xo = np.array(x[n : n + 1])
                xo[:, r : r + 3, c : c + 3, :] = 0.5
                want[n, a, b] = float(jax.nn.softmax(score(jnp.asarray(xo)))[0, 1])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    raw = attribution.occlusion(score, x, [0, 2], patch=8, stride=1, probabilities=False)
    full = score(jnp.full_like(x, 0.0))
    np.testing.assert_allclose(raw[:, 0, 0], [full[0, 0], full[1, 2]], rtol=1e-5)


def test_attribution_errors(rng):
    score = _score_fn(rng)
    x = jnp.zeros((1, 8, 8, 2))
    with pytest.raises(ValueError, match="`patch` \\(=9\\)"):
        attribution.occlusion(score, x, 0, patch=9)
    with pytest.raises(ValueError, match="`stride` \\(=0\\)"):
        attribution.occlusion(score, x, 0, stride=0)
    with pytest.raises(ValueError, match="`target` \\(=\\[0, 1\\]\\)"):
        attribution.saliency(score, x, [0, 1])
    with pytest.raises(ValueError, match="`x` must be"):
        attribution.saliency(score, x[0], 0)


def test_top_activations_and_crop(rng):
    acts = rng.normal(size=(10, 3, 4, 5))

    def fn(idx):
        return acts[np.asarray(idx)[:, 0, 0, 0].astype(int)]

    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) * np.ones(
        (10, 2, 2, 1), np.float32
    )
    top = analysis.top_activations(fn, images, [4, 1], k=5, batch_size=3)
    for ci, ch in enumerate([4, 1]):
        flat = acts[..., ch].ravel()
        order = np.argsort(-flat, kind="stable")[:5]
        want = np.stack([*np.unravel_index(order, acts.shape[:3]), flat[order]], axis=-1)
        np.testing.assert_allclose(top[ci], want)
    with pytest.raises(ValueError, match="`channels` entry 7"):
        analysis.top_activations(fn, images, [7])
    with pytest.raises(ValueError, match="`k` \\(=0\\)"):
        analysis.top_activations(fn, images, [0], k=0)
    img = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    patch = analysis.crop(img, (-1, 2, 3, 3), fill=-1)
    np.testing.assert_array_equal(patch[..., 0], [[-1, -1, -1], [2, 3, -1], [6, 7, -1]])


def test_confusion_matrix_counts_pairs():
    y, p = np.array([0, 1, 2, 2, 1, 0, 2]), np.array([0, 2, 2, 1, 1, 0, 2])
    m = analysis.confusion_matrix(y, p, 3)
    want = np.zeros((3, 3), int)
    for a, b in zip(y, p, strict=True):
        want[a, b] += 1
    np.testing.assert_array_equal(m, want)
    with pytest.raises(ValueError, match="`labels` must lie in \\[0, 2\\)"):
        analysis.confusion_matrix(y, p, 2)


def test_read_metrics_jsonl_and_csv(tmp_path):
    rows = [
        {"step": 20, "split": "train", "loss": 0.5, "accuracy": 0.8},
        {"step": 10, "split": "train", "loss": 1.0, "accuracy": 0.5},
        {"step": 20, "split": "test", "loss": 0.6, "accuracy": 0.75},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = analysis.read_metrics(str(tmp_path))
    np.testing.assert_array_equal(got["train"]["loss"][0], [10, 20])
    np.testing.assert_array_equal(got["train"]["loss"][1], [1.0, 0.5])
    assert got["test"]["accuracy"][1].tolist() == [0.75]
    os.remove(tmp_path / "metrics.jsonl")
    (tmp_path / "metrics.csv").write_text(
        "step,split,name,value\n10,train,loss,1.0\n20,train,loss,0.5\n"
    )
    assert analysis.read_metrics(str(tmp_path))["train"]["loss"][1].tolist() == [1.0, 0.5]
    os.remove(tmp_path / "metrics.csv")
    with pytest.raises(FileNotFoundError, match=r"no metrics\.jsonl or metrics\.csv"):
        analysis.read_metrics(str(tmp_path))


def test_figures_write_pngs(tmp_path, rng):
    pytest.importorskip("matplotlib")
    figs = {
        "rgb": plots.filter_grid(rng.normal(size=(5, 5, 3, 6))),
        "deep": plots.filter_grid(rng.normal(size=(3, 3, 4, 5))),
        "maps": plots.feature_map_grid(rng.normal(size=(6, 6, 7))),
        "rows": plots.image_rows(
            {"a": [rng.normal(size=(4, 4))] * 3, "b": [rng.normal(size=(4, 4, 3))]}, ["x", "y", "z"]
        ),
        "curves": plots.curves_figure(
            {"train": {"loss": ([1, 2], [1.0, 0.5])}, "test": {"accuracy": ([2], [0.9])}}
        ),
        "confusion": plots.confusion_figure(np.array([[3, 1], [0, 4]])),
    }
    for name, fig in figs.items():
        path = plots.save(fig, str(tmp_path / f"{name}.png"))
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="`kernel` must be"):
        plots.filter_grid(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="`activation` must be"):
        plots.feature_map_grid(np.zeros((1, 3, 3, 3)))
    np.testing.assert_allclose(
        plots.to_display(np.array([-2.0, 0.0, 1.0]), symmetric=True), [0, 0.5, 0.75]
    )
