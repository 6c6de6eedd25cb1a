"""Ensemble evaluation over members' predictions, and boosting (SAMME) with the training loop.

:func:`evaluate_ensemble` scores every combination rule on one set of predictions
(e.g. the test set): each member, majority vote, probability averaging, weighted
averaging and stacking, plus the members' pairwise disagreement. Weighted averaging
and stacking need held-out predictions to fit their weights: they are **cross-fitted**
on two halves of the examples (fixed by ``seed``): fitted on one half, scored on the
other, and the other way round, so no example scores a rule fitted on it. Weighted
averaging weights each member by its accuracy on the fitting half; stacking fits a
multinomial logistic regression (``cnn_jax.train.fit_logistic_regression``) on the
members' probabilities side by side.

:func:`boost` trains members in sequence with SAMME by resampling: member ``m`` trains
on a training set drawn with probability proportional to the SAMME example weights
(``<base>_resampled`` with a ``weights_file``), then predicts the whole base training
set to update them (:func:`cnn_jax.ensemble.samme_update`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from cnn_jax.ensemble import combine
from cnn_jax.ensemble.resample import register_resampled, write_weights

__all__ = ["boost", "evaluate_ensemble"]


def _halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 2]).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def evaluate_ensemble(
    probs: Any,
    labels: Any,
    names: Sequence[str] | None = None,
    *,
    seed: int = 0,
    stacking_l2: float = 1e-3,
) -> dict[str, Any]:
    """Accuracy of every member and every combination rule, and the members' diversity.

    Args:
      probs: ``(M, N, K)`` member probabilities (or a list of ``(N, K)``).
      labels: ``(N,)`` true classes.
      names: a name per member.
      seed: the split into halves for the cross-fitted rules.
      stacking_l2: the meta-learner's L2 penalty.

    Returns:
      ``{"members": {name: acc}, "member_mean", "member_best", "majority_vote",
      "probability_average", "weighted_average", "stacking", "disagreement" (M x M
      list), "mean_disagreement", "num_examples"}``.

    Raises:
      ValueError: for an empty ensemble, mismatched class counts, or labels of another
        length.
    """
    from cnn_jax.train.transfer import fit_logistic_regression

    p = combine.check_probabilities(probs)
    y = np.asarray(labels).ravel()
    m, n, k = p.shape
    if y.shape != (n,):
        raise ValueError(f"`labels` has {y.size} entries for {n} predicted examples")
    names = list(names) if names is not None else [f"member{i}" for i in range(m)]
    if len(names) != m:
        raise ValueError(f"`names` has {len(names)} entries for {m} members")
    votes = np.argmax(p, -1)
    member_acc = [combine.accuracy(votes[i], y) for i in range(m)]
    weighted = np.zeros(n, np.int64)
    stacked = np.zeros(n, np.int64)
    halves = _halves(n, seed)
    features = combine.stacking_features(p)
    for fit, score in (halves, halves[::-1]):
        w = [combine.accuracy(votes[i, fit], y[fit]) for i in range(m)]
        weighted[score] = np.argmax(combine.weighted_average(p[:, score], w), -1)
        meta = fit_logistic_regression(features[fit], y[fit], num_classes=k, l2=stacking_l2)
        stacked[score] = meta.predict(features[score])
    dis = combine.pairwise_disagreement(votes)
    off = dis[~np.eye(m, dtype=bool)]
    return {
        "members": dict(zip(names, member_acc, strict=True)),
        "member_mean": float(np.mean(member_acc)),
        "member_best": float(np.max(member_acc)),
        "majority_vote": combine.accuracy(combine.majority_vote(votes, k), y),
        "probability_average": combine.accuracy(combine.average_probabilities(p), y),
        "weighted_average": combine.accuracy(weighted, y),
        "stacking": combine.accuracy(stacked, y),
        "disagreement": dis.tolist(),
        "mean_disagreement": float(off.mean()) if off.size else 0.0,
        "num_examples": int(n),
    }


TrainFn = Callable[[ConfigDict, str], dict[str, Any]]


def boost(
    base: ConfigDict, workdir: str, rounds: int, *, train: TrainFn | None = None
) -> dict[str, Any]:
    """SAMME by resampling: ``rounds`` members, each on a weighted draw of the training set.

    Member ``r`` trains in ``<workdir>/round<r>`` (seed ``base.seed + r``) on
    ``<base.dataset>_resampled`` drawn (``draw_seed = r``) with the current weights, so
    round 0 (uniform weights) is member 0 of a bagging run; its errors on the
    whole base training set give ``alpha_r`` and the next weights. A finished round
    (``round<r>/samme.json``) is not trained again, so an interrupted ``boost`` resumes.
    Boosting stops early if a member is no better than chance or perfect.

    Args:
      base: the training config of every member.
      workdir: the boosting run's directory.
      rounds: the number of members.
      train: the training function (default ``train_and_evaluate``).

    Returns:
      ``{"alphas", "errors", "workdirs"}`` of the members kept.
    """
    from cnn_jax.ensemble.members import load_member, member_predictions

    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` (={rounds!r}) must be a positive int")
    if train is None:
        from cnn_jax.train import train_and_evaluate as train
    from cnn_jax.data import get_dataset_info

    info = get_dataset_info(base.dataset)
    dataset = register_resampled(info.name)
    weights = None
    out: dict[str, Any] = {"alphas": [], "errors": [], "workdirs": []}
    for r in range(rounds):
        where = os.path.join(workdir, f"round{r}")
        record = os.path.join(where, "samme.json")
        if os.path.exists(record):
            with open(record) as f:
                rec = json.load(f)
        else:
            config = ConfigDict(base.to_dict())
            config.dataset = dataset
            config.seed = int(base.seed) + r
            config.dataset_options.draw_seed = r
            if weights is not None:
                config.dataset_options.weights_file = write_weights(weights, workdir)
            train(config, where)
            probs, labels = member_predictions(load_member(where), "train")
            if weights is None:
                weights = np.full(len(labels), 1.0 / len(labels))
            correct = np.argmax(probs, -1) == labels
            try:
                alpha, err, new = combine.samme_update(weights, correct, info.num_classes)
            except ValueError as e:
                rec = {"stopped": str(e)}
            else:
                rec = {"alpha": alpha, "error": err, "weights_file": write_weights(new, workdir)}
            os.makedirs(where, exist_ok=True)
            with open(record, "w") as f:
                json.dump(rec, f)
        if "stopped" in rec:
            out["stopped"] = rec["stopped"]
            break
        weights = np.load(rec["weights_file"])
        out["alphas"].append(rec["alpha"])
        out["errors"].append(rec["error"])
        out["workdirs"].append(where)
    return out
