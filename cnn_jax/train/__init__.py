"""Training: config, state, steps, optimizers, checkpoints, metrics and the loop."""

from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.config import default_config, validate_config
from cnn_jax.train.divergence import TrainingDivergedError
from cnn_jax.train.loop import train_and_evaluate
from cnn_jax.train.optim import make_optimizer, make_schedule
from cnn_jax.train.plateau import init_plateau, update_plateau
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
from cnn_jax.train.workdir_lock import WorkdirLock, WorkdirLockedError

__all__ = [
    "Checkpointer",
    "LinearProbe",
    "TrainState",
    "TrainingDivergedError",
    "WorkdirLock",
    "WorkdirLockedError",
    "count_params",
    "create_train_state",
    "cross_entropy",
    "default_config",
    "eval_step",
    "extract_features",
    "fit_logistic_regression",
    "freeze_labels",
    "frozen_batch_norm",
    "init_plateau",
    "make_optimizer",
    "make_schedule",
    "partition_optimizer",
    "train_and_evaluate",
    "train_step",
    "update_plateau",
    "validate_config",
]
