"""Training: state, steps, optimizers, checkpoints, metrics and the loop."""

from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.loop import TrainingDivergedError, train_and_evaluate, validate_config
from cnn_jax.train.optim import make_optimizer, make_schedule
from cnn_jax.train.state import TrainState, count_params, create_train_state
from cnn_jax.train.steps import cross_entropy, eval_step, train_step
from cnn_jax.train.transfer import (
    LinearProbe,
    extract_features,
    fit_logistic_regression,
    freeze_labels,
    frozen_batch_norm,
    partition_optimizer,
)

__all__ = [
    "Checkpointer",
    "LinearProbe",
    "TrainState",
    "TrainingDivergedError",
    "count_params",
    "create_train_state",
    "cross_entropy",
    "eval_step",
    "extract_features",
    "fit_logistic_regression",
    "freeze_labels",
    "frozen_batch_norm",
    "make_optimizer",
    "make_schedule",
    "partition_optimizer",
    "train_and_evaluate",
    "train_step",
    "validate_config",
]
