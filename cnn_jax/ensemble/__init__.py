"""Ensembles of trained networks: voting, averaging, bagging, boosting (SAMME), stacking.

* :mod:`~cnn_jax.ensemble.combine`: the combination rules on predictions (majority
  vote with ties to the smallest class, probability and weighted averaging, SAMME's
  update and vote, stacking features), accuracy, pairwise disagreement, and the
  arithmetic of independent voters (:func:`majority_accuracy`).
* :mod:`~cnn_jax.ensemble.members`: any training workdir as a member, its
  probabilities on a split.
* :mod:`~cnn_jax.ensemble.resample`: ``<base>_resampled`` data sets (bootstrap and
  weighted draws of the training set) for bagging and boosting through the usual
  pipeline; importing this package registers them for ``mnist``, ``cifar10`` and
  ``synthetic``.
* :mod:`~cnn_jax.ensemble.methods`: :func:`evaluate_ensemble` (members and every rule,
  cross-fitted weights and stacking) and :func:`boost` (SAMME by resampling).

Command line: ``python -m experiments.ensemble --members=DIR,DIR,... --out=DIR``.
"""

from cnn_jax.ensemble.combine import (
    accuracy,
    average_probabilities,
    check_labels,
    check_probabilities,
    majority_accuracy,
    majority_vote,
    pairwise_disagreement,
    samme_update,
    samme_vote,
    simulate_majority,
    stacking_features,
    weighted_average,
)
from cnn_jax.ensemble.members import Member, load_member, member_predictions, stack_predictions
from cnn_jax.ensemble.methods import boost, evaluate_ensemble
from cnn_jax.ensemble.resample import (
    bootstrap_indices,
    register_resampled,
    resampled_name,
    write_weights,
)

for _base in ("mnist", "cifar10", "synthetic"):
    register_resampled(_base)
del _base

__all__ = [
    "Member",
    "accuracy",
    "average_probabilities",
    "boost",
    "bootstrap_indices",
    "check_labels",
    "check_probabilities",
    "evaluate_ensemble",
    "load_member",
    "majority_accuracy",
    "majority_vote",
    "member_predictions",
    "pairwise_disagreement",
    "register_resampled",
    "resampled_name",
    "samme_update",
    "samme_vote",
    "simulate_majority",
    "stack_predictions",
    "stacking_features",
    "weighted_average",
    "write_weights",
]
