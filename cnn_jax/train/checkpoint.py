"""Orbax checkpoints: save every N steps and at the end, keep K, resume from the newest intact.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so
a run killed while saving leaves the previous checkpoints intact and the partial one
is ignored on restart. Saves are synchronous: a failed write (a full disk, a read-only
or missing folder) raises ``CheckpointWriteError`` from ``save`` at once, and no
background thread is left to keep the process alive. Each saved step folder then gets
a SHA-256 of its files (``cnn_jax.train.checkpoint_integrity``); ``restore_latest``
verifies it and falls back to the newest intact checkpoint, with a warning naming both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from cnn_jax.train import checkpoint_integrity as integrity
from cnn_jax.train.checkpoint_integrity import CorruptCheckpointError

#: The folder of a step's one item (``CheckpointManager``'s name for a single item).
_ITEM = "default"

__all__ = [
    "CheckpointMismatchError",
    "CheckpointWriteError",
    "Checkpointer",
    "CorruptCheckpointError",
    "Restored",
]


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the step and the folder."""


class CheckpointMismatchError(ValueError):
    """An intact checkpoint does not fit the state of this config (names and shapes)."""


@dataclasses.dataclass(frozen=True)
class Restored:
    """A restored checkpoint: its step, its tree and the ``extra`` saved with it."""

    step: int
    tree: Any
    extra: Any


class Checkpointer:
    """A thin wrapper over ``orbax.checkpoint.CheckpointManager``.

    Args:
      directory: where checkpoints live (``<workdir>/checkpoints``).
      keep: how many checkpoints to keep (the newest).

    Raises:
      CheckpointWriteError: if ``directory`` cannot be created (e.g. it is a file).
    """

    def __init__(self, directory: str, keep: int = 3):
        if keep < 1:
            raise ValueError(f"`keep` (={keep}) must be at least 1")
        self.directory = os.path.abspath(directory)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as e:
            raise CheckpointWriteError(
                f"cannot create the checkpoint folder {self.directory}: {e}"
            ) from e
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint (not verified), or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the complete checkpoints, oldest first (not verified)."""
        return sorted(self._manager.all_steps())

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
        return frozenset(self._metadata(step).keys())

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
          CorruptCheckpointError: if the checkpoint fails its checksum or cannot be read.
          CheckpointMismatchError: if it is intact but does not fit ``target``.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        integrity.verify(self.directory, step)
        return self._restore(target, step)

    def restore_keys(self, keys: tuple[str, ...], step: int | None = None) -> dict[str, Any]:
        """Only the top-level ``keys`` of a checkpoint that it holds, on the first device.

        Reads nothing else from disk: a model's variables come back without the
        optimizer state beside them (for Adam twice their size).

        Args:
          keys: top-level keys of the saved tree (e.g. ``('params', 'batch_stats')``);
            keys the checkpoint lacks are left out of the result.
          step: which checkpoint (default: the newest).

        Raises:
          FileNotFoundError: if there is no checkpoint.
          CorruptCheckpointError: if the checkpoint fails its checksum or cannot be read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        integrity.verify(self.directory, step)
        metadata = self._metadata(step)
        wanted = {k: metadata[k] for k in keys if k in metadata}
        if not wanted:
            return {}
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), wanted
        )
        args = ocp.args.PyTreeRestore(
            item=abstract,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
            partial_restore=True,
        )
        item = os.path.join(self._step_dir(step), _ITEM)
        with ocp.PyTreeCheckpointer() as reader:
            try:
                return dict(reader.restore(item, args=args))
            except Exception as e:
                raise CorruptCheckpointError(
                    f"checkpoint {step} ({self._step_dir(step)}): keys {sorted(wanted)} "
                    f"unreadable: {type(e).__name__}: {e}"
                ) from e

    def _restore(self, target: Any, step: int) -> Any:
        metadata = self._metadata(step)
        if target is None:
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            abstract = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata
            )
        else:
            self._check_fits(step, metadata, target)
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # its files are intact: the tree does not fit
            raise CheckpointMismatchError(
                f"checkpoint {step} ({self._step_dir(step)}) cannot be restored into the "
                f"state of this config: {type(e).__name__}: {e}"
            ) from e

    def restore_latest(self, template: dict[str, Any]) -> Restored | None:
        """The newest intact checkpoint, restored into the keys of ``template`` it holds.

        A checkpoint that fails its checksum or cannot be read is moved to
        ``<directory>.corrupt/`` (kept for inspection) and the next older one is tried;
        a warning names both.

        Args:
          template: the full checkpoint tree of a fresh state; keys the checkpoint lacks
            (e.g. ``plateau`` in an older checkpoint) are left out of the restore.

        Returns:
          The restored checkpoint, or None if there is none.

        Raises:
          CorruptCheckpointError: if checkpoints exist but none is intact.
          CheckpointMismatchError: if the newest intact checkpoint does not fit.
        """
        bad: list[str] = []
        for step in reversed(self.all_steps()):
            try:
                integrity.verify(self.directory, step)
                saved = frozenset(self._metadata(step).keys())
                tree = self._restore({k: v for k, v in template.items() if k in saved}, step)
                extra = integrity.read_extra(self.directory, step)
            except CorruptCheckpointError as e:
                bad.append(str(e))
                self._set_aside(step)
                continue
            if bad:
                logging.warning(
                    "%s; resuming from checkpoint %d, the newest intact one", "; ".join(bad), step
                )
            return Restored(step, tree, extra)
        if bad:
            raise CorruptCheckpointError(
                f"no intact checkpoint in {self.directory} (moved to {self.directory}.corrupt): "
                + "; ".join(bad)
            )
        return None

    def save(self, step: int, tree: Any, extra: Any = None) -> None:
        """Saves ``tree`` as checkpoint ``step`` unless it exists, then its checksum.

        Args:
          step: the training step.
          tree: a pytree of arrays.
          extra: JSON-serializable values saved beside the arrays (``Restored.extra``).

        Raises:
          CheckpointWriteError: naming the step and the folder, if anything fails.
        """
        if step in self._manager.all_steps():
            if self._verified(step):
                return
            self._set_aside(step)  # an interrupted earlier save of the same step
        try:
            self._manager.save(step, args=ocp.args.StandardSave(tree))
            if jax.process_index() == 0:  # one writer on the shared folder
                integrity.write_sidecars(self.directory, step, extra)
        except Exception as e:  # orbax wraps the OSError in several ways
            raise CheckpointWriteError(
                f"could not write checkpoint {step} to {self.directory}: {type(e).__name__}: {e}"
            ) from e

    def close(self) -> None:
        """Releases the manager (saves are synchronous: nothing is pending)."""
        self._manager.close()

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _metadata(self, step: int) -> Any:
        try:
            return self._manager.item_metadata(step)
        except Exception as e:
            raise CorruptCheckpointError(
                f"checkpoint {step} ({self._step_dir(step)}): unreadable metadata: "
                f"{type(e).__name__}: {e}"
            ) from e

    def _verified(self, step: int) -> bool:
        """Whether step ``step`` is intact (verified, or older than checksums)."""
        try:
            integrity.verify(self.directory, step)
        except CorruptCheckpointError:
            return False
        return True

    def _check_fits(self, step: int, metadata: Any, target: Any) -> None:
        # The model's variables (plain dicts); the optimizer state is left to orbax.
        if not isinstance(target, dict):
            return
        model = {k: metadata[k] for k in ("params", "batch_stats") if k in metadata}
        saved = {jax.tree_util.keystr(p): m for p, m in _leaves(model)}
        model = {k: target[k] for k in ("params", "batch_stats") if k in target}
        wanted = {jax.tree_util.keystr(p): t for p, t in _leaves(model)}
        missing = sorted(set(wanted) - set(saved))
        shapes = [
            f"{k}: saved {tuple(saved[k].shape)}, model {tuple(wanted[k].shape)}"
            for k in sorted(set(wanted) & set(saved))
            if tuple(saved[k].shape) != tuple(getattr(wanted[k], "shape", ()))
        ]
        if missing or shapes:
            parts = ([f"missing from the checkpoint: {missing[:10]}"] if missing else []) + (
                [f"shape changes: {shapes[:10]}"] if shapes else []
            )
            raise CheckpointMismatchError(
                f"checkpoint {step} in {self.directory} does not fit the model of this config "
                f"({'; '.join(parts)}); use a new workdir for a changed model"
            )

    def _set_aside(self, step: int) -> None:
        """Moves a bad step folder to ``<directory>.corrupt/<step>[-n]``."""
        aside = f"{self.directory}.corrupt"
        os.makedirs(aside, exist_ok=True)
        dest, n = os.path.join(aside, str(step)), 1
        while os.path.exists(dest):
            dest, n = os.path.join(aside, f"{step}-{n}"), n + 1
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            shutil.move(self._step_dir(step), dest)
        self._manager.reload()


def _leaves(tree: Any) -> list[tuple[Any, Any]]:
    return jax.tree_util.tree_leaves_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, dict)
    )
