"""Mu-law companding: against the G.711 formula in numpy, and both round trips."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_jax.data.mulaw import SILENCE, mu_law_decode, mu_law_encode


def _np_encode(x: np.ndarray, mu: int) -> np.ndarray:
    x = np.clip(x.astype(np.float64), -1, 1)
    f = np.sign(x) * np.log(1 + mu * np.abs(x)) / np.log(1 + mu)
    return np.floor((f + 1) / 2 * mu + 0.5).astype(np.int64)


def _np_decode(q: np.ndarray, mu: int) -> np.ndarray:
    y = 2 * q.astype(np.float64) / mu - 1
    return np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu


@pytest.mark.parametrize("mu", [255, 15])
def test_encode_decode_match_numpy(mu):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1, 1, 5000), rng.normal(0, 0.01, 5000), [-1, 0, 1, -2, 3]])
    x = x.astype(np.float32)
    q = np.asarray(mu_law_encode(x, mu))
    ref = _np_encode(x, mu)
    # float32 vs float64 may differ by one level exactly at a rounding boundary
    assert np.mean(q == ref) > 0.999 and np.max(np.abs(q - ref)) <= 1
    assert q.dtype == np.int32 and q.min() >= 0 and q.max() <= mu
    codes = np.arange(mu + 1)
    back = np.asarray(mu_law_decode(codes, mu))
    np.testing.assert_allclose(back, _np_decode(codes, mu), 1e-6, 1e-6)


def test_round_trips():
    codes = np.arange(256, dtype=np.int32)
    np.testing.assert_array_equal(np.asarray(mu_law_encode(mu_law_decode(codes))), codes)
    assert int(mu_law_encode(np.float32(0.0))) == SILENCE
    x = np.random.default_rng(1).uniform(-1, 1, 20000).astype(np.float32)
    back = np.asarray(mu_law_decode(mu_law_encode(x)))
    # within half a level in the companded domain
    f = lambda v: np.sign(v) * np.log1p(255 * np.abs(v)) / np.log(256.0)  # noqa: E731
    assert np.max(np.abs(f(back) - f(x))) <= 1 / 255 + 1e-6
    assert np.max(np.abs(back - x)) < 0.032  # the widest level, near +-1


def test_bad_inputs_named():
    with pytest.raises(TypeError, match=r"`x`.*int"):
        mu_law_encode(np.arange(3))
    with pytest.raises(TypeError, match=r"`q`.*float"):
        mu_law_decode(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"`mu`.*0"):
        mu_law_encode(np.zeros(3, np.float32), 0)
