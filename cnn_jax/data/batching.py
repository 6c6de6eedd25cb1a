"""``BatchIterator``: sharded, shuffled, resumable batches of a dict of numpy arrays.

The data sets here fit in host memory (or decode lazily by index), so a pipeline is
index arithmetic over the arrays of :func:`cnn_jax.data.load_dataset`:

* **Multi-host sharding.** Training: every process computes the same global order of the
  epoch and takes its own disjoint part of every *global* batch: process ``p`` of ``P``
  with per-process batch ``b`` reads positions ``[p b, (p + 1) b)`` of each global batch
  of ``P b``. The global batches, assembled in process order (as
  ``jax.make_array_from_process_local_data`` does), are therefore the same whatever the
  number of processes, and so is training. Evaluation: ``np.array_split(range(N), P)[p]``,
  slices that cover every example.
* **Shuffling.** Epoch ``e`` visits the examples in the order
  ``np.random.default_rng([rng_seed, e]).permutation(N)``: deterministic for a seed,
  different in every epoch; the last ``N mod (P b)`` of the order are dropped.
* **Batches.** Training drops the remainder of every epoch (each batch is full).
  Evaluation pads the final batch(es) with zeros and adds a boolean ``mask``, true for
  real examples, so that summing over ``mask`` counts every example exactly once; every
  process runs ``ceil(ceil(N / P) / per_process_batch)`` steps.
* **Epochs.** ``num_epochs`` epochs, or forever when it is ``None``.
* **Resuming.** Step ``s`` is batch ``s % steps_per_epoch`` of epoch
  ``s // steps_per_epoch``; ``start_step=s`` starts there directly (nothing is iterated
  to get there), so training resumed from a checkpoint at step ``s`` sees the batches it
  would have seen. The current position is :attr:`BatchIterator.step`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from cnn_jax.ops._validate import is_int

__all__ = ["Batch", "BatchIterator"]

Batch = dict[str, np.ndarray]


class BatchIterator(Iterator[Batch]):
    """Batches of a dict of arrays for one process; see the module docstring.

    Attributes:
      batch_size: examples per batch (per process).
      training: whether batches are shuffled-train style (drop remainder) or eval style
        (padded, with ``mask``).
      steps_per_epoch: batches per epoch.
      num_steps: total batches (``None``: infinite).
      step: the index of the next batch (what to checkpoint to resume).
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        rng_seed: int,
        training: bool,
        shuffle: bool | None = None,
        num_epochs: int | None = None,
        process_index: int = 0,
        process_count: int = 1,
        start_step: int = 0,
        transform: Callable[[Batch], Batch] | None = None,
    ):
        """Builds the iterator.

        Args:
          arrays: the whole split (every process passes the same arrays), examples on
            axis 0.
          batch_size: examples per batch for this process.
          rng_seed: the shuffling seed, a non-negative int.
          training: drop the remainder (``True``) or pad with a ``mask`` (``False``).
          shuffle: shuffle each epoch (default: ``training``).
          num_epochs: number of passes; ``None`` repeats forever.
          process_index: this process, in ``[0, process_count)``.
          process_count: the number of processes.
          start_step: the first step to produce.
          transform: applied to every batch (after padding), e.g. normalization.

        Raises:
          ValueError: for empty or ragged arrays, bad sizes or indices, or a batch larger
            than this process' slice in training.
        """
        if not isinstance(arrays, Mapping) or not arrays:
            raise ValueError("`arrays` must be a non-empty dict of arrays")
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"`arrays` must have the same length on axis 0, got {sizes}")
        n = next(iter(sizes.values()))
        for name, value in (("batch_size", batch_size), ("process_count", process_count)):
            if not is_int(value) or value < 1:
                raise ValueError(f"`{name}` (={value!r}) must be a positive int")
        if not is_int(process_index) or not 0 <= process_index < process_count:
            raise ValueError(
                f"`process_index` (={process_index!r}) must be an int in [0, {process_count})"
            )
        if not is_int(rng_seed) or rng_seed < 0:
            raise ValueError(f"`rng_seed` (={rng_seed!r}) must be a non-negative int")
        if not is_int(start_step) or start_step < 0:
            raise ValueError(f"`start_step` (={start_step!r}) must be a non-negative int")
        if num_epochs is not None and (not is_int(num_epochs) or num_epochs < 1):
            raise ValueError(f"`num_epochs` (={num_epochs!r}) must be a positive int or None")
        if n < process_count:
            raise ValueError(
                f"the data ({n} examples) must have at least one example per process "
                f"(`process_count`={process_count})"
            )
        # A column with ``take(indices, epoch)`` (e.g. ImageNet's lazily decoded images)
        # is asked for each batch's examples; anything else is an in-memory array.
        self._arrays = {k: v if hasattr(v, "take") and not isinstance(v, np.ndarray)
                        else np.asarray(v) for k, v in arrays.items()}  # fmt: skip
        self.batch_size = int(batch_size)
        self.training = bool(training)
        self._shuffle = self.training if shuffle is None else bool(shuffle)
        self._seed = int(rng_seed)
        self._transform = transform
        self._process = (int(process_index), int(process_count))
        if self.training:
            self._indices = np.arange(n)
            self.steps_per_epoch = n // (self.batch_size * process_count)
            if self.steps_per_epoch == 0:
                raise ValueError(
                    f"`batch_size` (={batch_size}) x `process_count` (={process_count}) is "
                    f"larger than the training data ({n} examples)"
                )
        else:
            self._indices = np.array_split(np.arange(n), process_count)[process_index]
            self.steps_per_epoch = math.ceil(math.ceil(n / process_count) / self.batch_size)
        self.num_steps = None if num_epochs is None else int(num_epochs) * self.steps_per_epoch
        self.step = int(start_step)
        self._order_epoch = -1
        self._order = np.arange(len(self._indices))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._order_epoch:
            m = len(self._indices)
            if self._shuffle:
                self._order = np.random.default_rng([self._seed, epoch]).permutation(m)
            else:
                self._order = np.arange(m)
            self._order_epoch = epoch
        return self._order

    @staticmethod
    def _take(column: Any, idx: np.ndarray, epoch: int) -> np.ndarray:
        if isinstance(column, np.ndarray):
            return column[idx]
        return column.take(idx, epoch)

    def batch_at(self, step: int) -> Batch:
        """The batch of a given step, computed directly (no iteration).

        Args:
          step: a non-negative step.

        Returns:
          The batch: a dict of numpy arrays (and ``mask`` in evaluation).
        """
        epoch, i = divmod(int(step), self.steps_per_epoch)
        if self.training:  # this process' part of global batch i
            p, count = self._process
            start = (i * count + p) * self.batch_size
        else:
            start = i * self.batch_size
        pos = self._epoch_order(epoch)[start : start + self.batch_size]
        idx = self._indices[pos]
        if self.training:
            batch = {k: self._take(v, idx, epoch) for k, v in self._arrays.items()}
        else:
            valid = len(idx)
            full = np.zeros((self.batch_size,), np.int64)
            full[:valid] = idx
            batch = {}
            for k, v in self._arrays.items():
                b = np.array(self._take(v, full, epoch))
                b[valid:] = 0
                batch[k] = b
            batch["mask"] = np.arange(self.batch_size) < valid
        return self._transform(batch) if self._transform is not None else batch

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        if self.num_steps is not None and self.step >= self.num_steps:
            raise StopIteration
        batch = self.batch_at(self.step)
        self.step += 1
        return batch
