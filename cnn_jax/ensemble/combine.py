"""Combining members' predictions: voting, averaging, SAMME, stacking; accuracy and diversity.

Every function takes the members' predictions as arrays with the members on axis 0:
class labels ``(M, N)`` or class probabilities ``(M, N, K)``. They are plain numpy;
:func:`check_probabilities` and :func:`check_labels` give the errors for an empty
ensemble or members that disagree on the number of classes or examples.

Ties: :func:`majority_vote` (and :func:`samme_vote`) break a tie between classes with
the same number of votes (the same summed weight) in favour of the **smallest class
index** among them, so the result is deterministic and independent of member order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "average_probabilities",
    "check_labels",
    "check_probabilities",
    "majority_accuracy",
    "majority_vote",
    "pairwise_disagreement",
    "samme_update",
    "samme_vote",
    "simulate_majority",
    "stacking_features",
    "weighted_average",
]


def check_probabilities(probs: Any) -> np.ndarray:
    """The members' probabilities as one ``(M, N, K)`` float64 array.

    Args:
      probs: a sequence of ``(N, K)`` arrays (one per member) or an ``(M, N, K)`` array.

    Raises:
      ValueError: for an empty ensemble, or members whose class counts ``K`` or example
        counts ``N`` differ (naming the first such member).
    """
    members = list(probs)
    if not members:
        raise ValueError("the ensemble is empty: `probs` has no members")
    shapes = [np.shape(p) for p in members]
    for i, s in enumerate(shapes):
        if len(s) != 2:
            raise ValueError(f"member {i}: probabilities must be (N, K), got shape {s}")
        if s[1] != shapes[0][1]:
            raise ValueError(
                f"member {i} has {s[1]} classes but member 0 has {shapes[0][1]}: every member "
                "must predict the same classes"
            )
        if s[0] != shapes[0][0]:
            raise ValueError(
                f"member {i} predicts {s[0]} examples but member 0 predicts {shapes[0][0]}"
            )
    return np.stack([np.asarray(p, np.float64) for p in members])


def check_labels(labels: Any, num_classes: int) -> np.ndarray:
    """The members' predicted labels as one ``(M, N)`` int64 array.

    Raises:
      ValueError: for an empty ensemble, unequal lengths, or a label outside
        ``[0, num_classes)``.
    """
    members = list(labels)
    if not members:
        raise ValueError("the ensemble is empty: `labels` has no members")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` (={num_classes!r}) must be a positive int")
    lengths = [len(np.ravel(m)) for m in members]
    if len(set(lengths)) != 1:
        raise ValueError(f"members predict different numbers of examples: {lengths}")
    out = np.stack([np.asarray(m).ravel() for m in members]).astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= num_classes):
        raise ValueError(
            f"a predicted label ({int(out.min())}..{int(out.max())}) is outside "
            f"[0, {num_classes}) (num_classes={num_classes})"
        )
    return out


def _weights(weights: Sequence[float] | None, m: int) -> np.ndarray:
    if weights is None:
        return np.ones(m)
    w = np.asarray(weights, np.float64).ravel()
    if w.shape != (m,):
        raise ValueError(f"`weights` has {w.size} entries for {m} members")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"`weights` (={w.tolist()}) must be finite, >= 0, not all 0")
    return w


def majority_vote(
    labels: Any, num_classes: int, weights: Sequence[float] | None = None
) -> np.ndarray:
    """The (weighted) plurality vote; ties go to the smallest class index.

    Args:
      labels: ``(M, N)`` predicted classes.
      num_classes: ``K``.
      weights: a non-negative weight per member (default 1 each).

    Returns:
      ``(N,)`` int64 classes.
    """
    lab = check_labels(labels, num_classes)
    w = _weights(weights, lab.shape[0])
    votes = np.zeros((lab.shape[1], num_classes))
    for m in range(lab.shape[0]):
        np.add.at(votes, (np.arange(lab.shape[1]), lab[m]), w[m])
    return np.argmax(votes, axis=-1)  # the first maximum: the smallest tied class


def average_probabilities(probs: Any) -> np.ndarray:
    """The mean of the members' probabilities, ``(N, K)``."""
    return check_probabilities(probs).mean(0)


def weighted_average(probs: Any, weights: Sequence[float]) -> np.ndarray:
    """``sum_m w_m p_m / sum_m w_m``, ``(N, K)``; weights non-negative, not all 0."""
    p = check_probabilities(probs)
    w = _weights(weights, p.shape[0])
    return np.tensordot(w / w.sum(), p, axes=1)


def accuracy(predictions: Any, labels: Any) -> float:
    """The fraction of correct predictions: classes ``(N,)`` or probabilities ``(N, K)``.

    Raises:
      ValueError: if the lengths differ or nothing is predicted.
    """
    pred = np.asarray(predictions)
    if pred.ndim == 2:
        pred = np.argmax(pred, -1)
    y = np.asarray(labels).ravel()
    if pred.shape != y.shape or y.size == 0:
        raise ValueError(f"`predictions` {pred.shape} and `labels` {y.shape} must match, non-empty")
    return float(np.mean(pred == y))


def pairwise_disagreement(labels: Any) -> np.ndarray:
    """``D[i, j]``: the fraction of examples on which members ``i`` and ``j`` disagree.

    Args:
      labels: ``(M, N)`` predicted classes.

    Returns:
      A symmetric ``(M, M)`` float64 matrix with a zero diagonal.
    """
    members = list(labels)
    if not members:
        raise ValueError("the ensemble is empty: `labels` has no members")
    lab = np.stack([np.asarray(m).ravel() for m in members])
    return np.mean(lab[:, None, :] != lab[None, :, :], axis=-1)


def majority_accuracy(p: float, n: int) -> float:
    """P(a majority of ``n`` independent classifiers, each right with probability ``p``, is right).

    The exact binomial sum ``sum_{k > n/2} C(n, k) p^k (1 - p)^(n - k)`` (for two
    classes, or when the wrong votes never agree on a class). Three 70% classifiers:
    ``0.7^3 + 3 * 0.7^2 * 0.3 = 0.343 + 0.441 = 0.784``.

    Raises:
      ValueError: for ``p`` outside [0, 1] or ``n`` not a positive odd int.
    """
    if not isinstance(p, int | float) or not 0 <= p <= 1:
        raise ValueError(f"`p` (={p!r}) must be a probability in [0, 1]")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n % 2 == 0:
        raise ValueError(f"`n` (={n!r}) must be a positive odd int (no ties)")
    return float(sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n // 2 + 1, n + 1)))


def simulate_majority(p: float, n: int, trials: int, rng: np.random.Generator) -> float:
    """Monte Carlo estimate of :func:`majority_accuracy`: ``trials`` votes of ``n`` coins."""
    majority_accuracy(p, n)  # the argument checks
    right = rng.random((trials, n)) < p
    return float(np.mean(right.sum(1) > n // 2))


def samme_update(weights: Any, correct: Any, num_classes: int) -> tuple[float, float, np.ndarray]:
    """One SAMME round (Zhu, Zou, Rosset & Hastie 2009, multi-class AdaBoost).

    ``err = sum_i w_i [wrong_i] / sum_i w_i``, ``alpha = log((1 - err) / err) + log(K - 1)``,
    ``w_i <- w_i exp(alpha [wrong_i])``, renormalized to sum to 1.

    Args:
      weights: ``(N,)`` non-negative example weights.
      correct: ``(N,)`` booleans, whether the new member got example ``i`` right.
      num_classes: ``K >= 2``.

    Returns:
      ``(alpha, err, new_weights)``.

    Raises:
      ValueError: if the member is no better than chance (``err >= 1 - 1/K``: SAMME
        needs a better-than-random member) or perfect (``err = 0``: alpha is infinite),
        or for bad shapes or weights.
    """
    w = np.asarray(weights, np.float64).ravel()
    c = np.asarray(correct, bool).ravel()
    if w.shape != c.shape or w.size == 0:
        raise ValueError(f"`weights` {w.shape} and `correct` {c.shape} must match, non-empty")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("`weights` must be finite, >= 0, not all 0")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` (={num_classes!r}) must be an int >= 2")
    err = float(np.sum(w[~c]) / np.sum(w))
    if err <= 0:
        raise ValueError("the member is perfect on the weighted set (err = 0): alpha is infinite")
    if err >= 1 - 1 / num_classes:
        raise ValueError(
            f"the member's weighted error {err:.4f} is not below chance 1 - 1/K = "
            f"{1 - 1 / num_classes:.4f}"
        )
    alpha = math.log((1 - err) / err) + math.log(num_classes - 1)
    new = w * np.exp(alpha * ~c)
    return alpha, err, new / new.sum()


def samme_vote(labels: Any, alphas: Sequence[float], num_classes: int) -> np.ndarray:
    """SAMME's prediction ``argmax_k sum_m alpha_m [h_m(x) = k]`` (ties: smallest class)."""
    return majority_vote(labels, num_classes, weights=alphas)


def stacking_features(probs: Any) -> np.ndarray:
    """The meta-learner's input: the members' probabilities side by side, ``(N, M K)``."""
    p = check_probabilities(probs)
    return np.transpose(p, (1, 0, 2)).reshape(p.shape[1], -1)
