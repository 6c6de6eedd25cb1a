"""Orbax checkpoints: save every N steps and at the end, keep K, resume from the latest.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so
a run killed while saving leaves the previous checkpoints intact and the partial one
is ignored on restart.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer"]


class Checkpointer:
    """A thin wrapper over ``orbax.checkpoint.CheckpointManager``.

    Args:
      directory: where checkpoints live (``<workdir>/checkpoints``).
      keep: how many checkpoints to keep (the newest).
    """

    def __init__(self, directory: str, keep: int = 3):
        if keep < 1:
            raise ValueError(f"`keep` (={keep}) must be at least 1")
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def saved_keys(self, step: int | None = None) -> frozenset[str]:
        """The top-level keys of a saved tree (default: the newest checkpoint's).

        Args:
          step: which checkpoint.

        Raises:
          FileNotFoundError: if there is no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return frozenset(self._manager.item_metadata(step).keys())

    def restore(self, target: Any = None, step: int | None = None) -> Any:
        """Restores a checkpoint, into the structure, shapes and shardings of ``target``.

        Args:
          target: a pytree of arrays like the one saved (e.g. a fresh state's tree), or
            None to restore the saved tree as it is, on this process' first device
            (whatever the topology it was saved from).
          step: which checkpoint (default: the newest).

        Returns:
          The restored pytree.

        Raises:
          FileNotFoundError: if there is no checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if target is None:
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            abstract = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                self._manager.item_metadata(step),
            )
        else:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def save(self, step: int, tree: Any) -> None:
        """Saves ``tree`` as checkpoint ``step`` (asynchronously) unless it exists.

        Args:
          step: the training step.
          tree: a pytree of arrays.
        """
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(tree))

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
