"""Ensembles: combination rules against hand-computed predictions, SAMME against numpy, the
lecture's arithmetic, resampled data sets, members from real workdirs, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnn_jax import data, ensemble
from cnn_jax.ensemble import combine


def test_majority_vote_by_hand_and_ties_to_the_smallest_class():
    labels = np.array([[0, 1, 2, 2, 1], [0, 2, 1, 2, 0], [1, 2, 0, 1, 2]])
    #  example 0: 0,0,1 -> 0; 1: 1,2,2 -> 2; 2: 2,1,0 three-way tie -> 0;
    #  3: 2,2,1 -> 2; 4: 1,0,2 tie -> 0
    np.testing.assert_array_equal(combine.majority_vote(labels, 3), [0, 2, 0, 2, 0])
    # Member order does not change the tie-break.
    np.testing.assert_array_equal(combine.majority_vote(labels[::-1], 3), [0, 2, 0, 2, 0])
    # Weights: member 2 outweighs the other two together.
    np.testing.assert_array_equal(
        combine.majority_vote(labels, 3, weights=[1, 1, 2.5]), [1, 2, 0, 1, 2]
    )
    # Two members tied on weight 1 each vs one at 2: a tie -> smallest class.
    np.testing.assert_array_equal(combine.majority_vote([[1], [1], [0]], 2, [1, 1, 2]), [0])


def test_averaging_and_disagreement_by_hand():
    p = np.array(
        [
            [[0.6, 0.4], [0.2, 0.8]],
            [[0.3, 0.7], [0.4, 0.6]],
            [[0.45, 0.55], [0.9, 0.1]],
        ]
    )
    np.testing.assert_allclose(combine.average_probabilities(p), [[0.45, 0.55], [0.5, 0.5]])
    np.testing.assert_allclose(
        combine.weighted_average(p, [2, 1, 1]), [[(1.2 + 0.3 + 0.45) / 4, 0.5125], [0.425, 0.575]]
    )
    votes = np.argmax(p, -1)  # [[0, 1], [1, 1], [1, 0]]
    d = combine.pairwise_disagreement(votes)
    np.testing.assert_allclose(d, [[0, 0.5, 1.0], [0.5, 0, 0.5], [1.0, 0.5, 0]])
    assert combine.accuracy(p[0], [0, 1]) == 1.0
    np.testing.assert_allclose(combine.stacking_features(p)[1], [0.2, 0.8, 0.4, 0.6, 0.9, 0.1])


def test_lecture_arithmetic_three_70_percent_voters():
    assert abs(0.7**3 - 0.343) < 1e-12  # the deck's 0.3492 is wrong
    assert abs(3 * 0.7**2 * 0.3 - 0.441) < 1e-12
    assert combine.majority_accuracy(0.7, 3) == pytest.approx(0.784, abs=1e-12)
    assert combine.majority_accuracy(0.7, 1) == pytest.approx(0.7)
    # More independent voters help more (Condorcet).
    assert combine.majority_accuracy(0.7, 5) == pytest.approx(0.83692, abs=1e-5)
    sim = combine.simulate_majority(0.7, 3, 200_000, np.random.default_rng(0))
    assert abs(sim - 0.784) < 4 * math.sqrt(0.784 * 0.216 / 200_000)
    # The same through the vote itself: three independent 70% classifiers on 10 classes
    # whose errors never agree (two classes: 0 right, 1 wrong).
    rng = np.random.default_rng(1)
    right = rng.random((3, 100_000)) < 0.7
    votes = np.where(right, 0, 1)
    acc = combine.accuracy(combine.majority_vote(votes, 2), np.zeros(100_000))
    assert abs(acc - 0.784) < 0.006
    with pytest.raises(ValueError, match="odd"):
        combine.majority_accuracy(0.7, 2)
    with pytest.raises(ValueError, match="`p`"):
        combine.majority_accuracy(1.5, 3)


def _samme_reference(weights, correct, k):
    """SAMME, written out from Zhu et al. (2009), Algorithm 2, steps (b)-(d)."""
    w = list(weights)
    total = sum(w)
    err = sum(wi for wi, c in zip(w, correct, strict=True) if not c) / total
    alpha = math.log((1 - err) / err) + math.log(k - 1)
    w = [wi * math.exp(alpha) if not c else wi for wi, c in zip(w, correct, strict=True)]
    s = sum(w)
    return alpha, err, [wi / s for wi in w]


def test_samme_weights_against_a_reference():
    rng = np.random.default_rng(0)
    w = np.full(50, 1 / 50)
    for _ in range(4):
        correct = rng.random(50) < 0.6
        alpha, err, new = combine.samme_update(w, correct, 10)
        ra, re, rw = _samme_reference(w, correct, 10)
        assert alpha == pytest.approx(ra) and err == pytest.approx(re)
        np.testing.assert_allclose(new, rw, rtol=1e-12)
        assert new.sum() == pytest.approx(1.0)
        w = new
    # By hand: 4 examples, one wrong, K=3: err 1/4, alpha = log 3 + log 2 = log 6.
    alpha, err, new = combine.samme_update(np.full(4, 0.25), [1, 1, 1, 0], 3)
    assert err == 0.25 and alpha == pytest.approx(math.log(6))
    np.testing.assert_allclose(new, [1 / 9, 1 / 9, 1 / 9, 6 / 9])
    np.testing.assert_array_equal(
        combine.samme_vote([[0, 1], [1, 1], [2, 0]], [1.0, 0.5, 0.7], 3), [0, 1]
    )
    with pytest.raises(ValueError, match="not below chance"):
        combine.samme_update(np.full(4, 0.25), [0, 0, 0, 1], 2)
    with pytest.raises(ValueError, match="perfect"):
        combine.samme_update(np.full(4, 0.25), [1, 1, 1, 1], 3)


def test_bad_ensembles_are_errors_naming_them():
    with pytest.raises(ValueError, match="empty"):
        combine.average_probabilities([])
    with pytest.raises(ValueError, match="empty"):
        ensemble.evaluate_ensemble([], [])
    with pytest.raises(ValueError, match="member 1 has 3 classes but member 0 has 2"):
        combine.average_probabilities([np.ones((4, 2)), np.ones((4, 3))])
    with pytest.raises(ValueError, match="member 1 predicts 5 examples"):
        combine.average_probabilities([np.ones((4, 2)), np.ones((5, 2))])
    with pytest.raises(ValueError, match="outside"):
        combine.majority_vote([[0, 3]], 3)
    with pytest.raises(ValueError, match="weights"):
        combine.weighted_average(np.ones((2, 3, 2)), [1, -1])
    with pytest.raises(ValueError, match="empty"):
        ensemble.stack_predictions([])


def test_evaluate_ensemble_cross_fits():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    # Three noisy members, one of them useless: weights and stacking should learn that.
    probs = []
    for noise in (1.0, 1.2, 50.0):
        logits = np.eye(4)[y] * 2 + rng.normal(scale=noise, size=(400, 4))
        e = np.exp(logits - logits.max(-1, keepdims=True))
        probs.append(e / e.sum(-1, keepdims=True))
    r = ensemble.evaluate_ensemble(probs, y, ["a", "b", "junk"])
    assert r["members"]["junk"] < 0.4 < r["members"]["a"]
    assert r["stacking"] > r["members"]["junk"] + 0.2
    assert r["num_examples"] == 400 and len(r["disagreement"]) == 3
    assert r["probability_average"] == combine.accuracy(np.mean(probs, 0), y)


def test_bootstrap_and_weighted_resampling():
    idx = ensemble.bootstrap_indices(1000, seed=3)
    assert idx.shape == (1000,) and 0.55 < len(np.unique(idx)) / 1000 < 0.72  # ~63.2%
    np.testing.assert_array_equal(idx, ensemble.bootstrap_indices(1000, seed=3))
    w = np.zeros(10)
    w[[2, 7]] = 1
    assert set(ensemble.bootstrap_indices(10, 0, 50, w)) == {2, 7}
    with pytest.raises(ValueError, match="weights"):
        ensemble.bootstrap_indices(10, 0, weights=np.ones(9))
    opts = {"image_size": 8, "train_size": 64, "test_size": 32}
    base = data.load_dataset("synthetic", "train", **opts)
    res = data.load_dataset("synthetic_resampled", "train", use_cache=False, draw_seed=2, **opts)
    np.testing.assert_array_equal(res["image"], base["image"][res["index"]])
    np.testing.assert_array_equal(res["label"], base["label"][res["index"]])
    test = data.load_dataset("synthetic_resampled", "test", use_cache=False, **opts)
    np.testing.assert_array_equal(
        test["image"], data.load_dataset("synthetic", "test", **opts)["image"]
    )
