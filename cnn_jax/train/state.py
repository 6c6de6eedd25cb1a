"""The training state: parameters, batch statistics, optimizer state, step, plateau."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from cnn_jax.train.plateau import init_plateau

__all__ = ["TrainState", "count_params", "create_train_state"]


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` plus ``batch_stats`` and ``plateau``.

    ``plateau`` is the reduce-on-plateau state (``cnn_jax.train.plateau.init_plateau``;
    its ``scale`` multiplies the updates when the train step is told so), or None.
    """

    batch_stats: Any = None
    plateau: Any = None

    def variables(self, params: Any | None = None) -> dict[str, Any]:
        """The variables to ``apply`` the model with (``params`` overrides the state's)."""
        out = {"params": self.params if params is None else params}
        if self.batch_stats:
            out["batch_stats"] = self.batch_stats
        return out

    def checkpoint_tree(self) -> dict[str, Any]:
        """The arrays a checkpoint holds (no functions)."""
        tree = {
            "step": self.step,
            "params": self.params,
            "batch_stats": self.batch_stats,
            "opt_state": self.opt_state,
        }
        if self.plateau is not None:
            tree["plateau"] = self.plateau
        return tree

    def restore(self, tree: dict[str, Any]) -> TrainState:
        """Returns this state with the arrays of a checkpoint tree (``plateau`` if it has one)."""
        return self.replace(
            step=tree["step"],
            params=tree["params"],
            batch_stats=tree["batch_stats"],
            opt_state=tree["opt_state"],
            plateau=tree.get("plateau", self.plateau),
        )


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array, input_shape: tuple[int, ...]
) -> TrainState:
    """Initializes the model on a dummy batch and wraps it with the optimizer.

    Args:
      model: a flax module with ``__call__(x, train)``.
      tx: the optimizer.
      rng: the initialization key.
      input_shape: a batch shape, e.g. ``(1, 32, 32, 1)``.

    Returns:
      A fresh ``TrainState`` at step 0, its ``plateau`` at ``init_plateau()``.
    """
    variables = model.init(
        {"params": rng, "dropout": rng}, jnp.zeros(input_shape, jnp.float32), train=False
    )
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=tx,
        batch_stats=batch_stats,
        plateau=jax.tree.map(jnp.asarray, init_plateau()),
    )


def count_params(params: Any) -> int:
    """Number of scalars in a parameter tree."""
    return sum(int(x.size) for x in jax.tree.leaves(params))
