"""Input pipelines: sharded, shuffled, resumable batches of numpy arrays, and device prefetch.

The data sets here fit in host memory, so a pipeline is index arithmetic over the arrays
of :func:`cnn_jax.data.load_dataset`:

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

import collections
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnn_jax.data import preprocess
from cnn_jax.data.datasets import get_dataset_info, load_dataset
from cnn_jax.ops._validate import is_int

__all__ = [
    "NORMALIZATIONS",
    "BatchIterator",
    "data_sharding",
    "input_pipeline",
    "prefetch_to_device",
]

Batch = dict[str, np.ndarray]

#: Values of ``config.normalization``.
NORMALIZATIONS = (None, "standardize", "channel_mean", "mean_image")


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


def _cfg(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, Mapping) or hasattr(config, "get"):
        return config.get(key, default)
    return getattr(config, key, default)


def _statistic(kind: str, images: np.ndarray, pad_to: int | None) -> np.ndarray:
    if not isinstance(images, np.ndarray):  # e.g. imagenet2012's lazily decoded files
        raise ValueError(
            f"`config.normalization` (={kind!r}) needs the training images in memory to "
            f"average them, but this data set decodes them lazily "
            f"({type(images).__name__}); use 'standardize' (per-channel constants)"
        )
    if pad_to is not None:
        images = preprocess.pad_images(images, pad_to)
    out = (
        preprocess.channel_mean(images) if kind == "channel_mean" else preprocess.mean_image(images)
    )
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def _train_statistic(kind: str, pad_to: int | None, load_args: tuple) -> np.ndarray:
    """A training-set mean, memoized: evaluation pipelines are built again and again."""
    name, data_dir, cache_dir, source, tfds_data_dir, options = load_args
    images = load_dataset(
        name,
        "train",
        data_dir,
        cache_dir=cache_dir,
        source=source,
        tfds_data_dir=tfds_data_dir,
        **dict(options),
    )["image"]
    return _statistic(kind, images, pad_to)


def _image_transform(
    config: Any, info_key: str, train_statistic: Callable[[str, int | None], np.ndarray]
) -> Callable[[Batch], Batch] | None:
    pad_to = _cfg(config, "pad_to")
    norm = _cfg(config, "normalization")
    if norm not in NORMALIZATIONS:
        raise ValueError(
            f"`config.normalization` (={norm!r}) must be one of "
            f"{', '.join(map(repr, NORMALIZATIONS))}"
        )
    if (pad_to is not None or norm is not None) and info_key != "image":
        raise ValueError(
            f"`config.pad_to` (={pad_to!r}) and `config.normalization` (={norm!r}) only "
            f"apply to image data sets, not {_cfg(config, 'dataset')!r}"
        )
    if pad_to is None and norm is None:
        return None

    def pad(x: np.ndarray) -> np.ndarray:
        return preprocess.pad_images(x, pad_to) if pad_to is not None else x

    if norm == "standardize":
        mean, std = preprocess.DATASET_STATS[get_dataset_info(_cfg(config, "dataset")).name]
    elif norm in ("channel_mean", "mean_image"):
        mean = train_statistic(norm, pad_to)
        std = np.ones_like(mean)

    def transform(batch: Batch) -> Batch:
        x = pad(batch["image"])  # zeros: the background, before normalization
        if norm is not None:
            x = preprocess.normalize(x, mean, std)
        return {**batch, "image": x}

    return transform


def input_pipeline(
    config: Any,
    split: str,
    *,
    rng_seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_step: int = 0,
    training: bool | None = None,
    data: Mapping[str, np.ndarray] | None = None,
) -> BatchIterator:
    """An iterator of batches (dicts of numpy arrays) for one process.

    Reads from ``config`` (an ``ml_collections.ConfigDict``, a dict or any object with
    attributes):

    * ``dataset`` (required): a :func:`cnn_jax.data.load_dataset` name.
    * ``batch_size`` (required): the *global* training batch size, divided evenly among
      the processes; ``eval_batch_size`` (default ``batch_size``) for evaluation.
    * ``num_epochs`` (training only; default ``None``, repeat forever; evaluation makes
      exactly one pass).
    * ``shuffle`` (training only; default ``True``).
    * ``data_dir``, ``cache_dir``, ``source``, ``tfds_data_dir``, ``dataset_options``
      (a dict of data-set options, e.g. ``{'audio_length': 16000}``): passed to
      :func:`cnn_jax.data.load_dataset`.
    * ``normalization`` (images; default ``None``, uint8 batches): ``'standardize'``
      (per-channel constants of :data:`cnn_jax.data.preprocess.DATASET_STATS`),
      ``'channel_mean'`` (VGG: subtract the training set's per-channel mean) or
      ``'mean_image'`` (AlexNet: subtract its mean image); float32 batches in ``[0, 1]``
      units.
    * ``pad_to`` (images; default ``None``): zero-pad to this size, e.g. 32 for LeNet-5
      on MNIST; padding comes first, so the means above are those of padded images.

    Batches hold the data set's arrays (``image`` / ``audio`` / ``tokens``, ``label``, ...)
    with ``batch_size // process_count`` examples, plus ``mask`` in evaluation.
    Augmentation belongs on the device: see :mod:`cnn_jax.data.augmentations`.

    Args:
      config: the configuration.
      split: ``'train'`` or ``'test'``.
      rng_seed: the shuffling seed (epoch ``e`` uses ``(rng_seed, e)``).
      process_index: ``jax.process_index()`` in multi-host training.
      process_count: ``jax.process_count()``.
      start_step: the step to start at (the checkpointed step to resume from).
      training: train-style batches (shuffled, repeated, remainder dropped) or
        eval-style (one pass, padded, ``mask``); default: ``split == 'train'``.
      data: the split's arrays, instead of loading them (e.g. for tests).

    Returns:
      A :class:`BatchIterator`.

    Raises:
      ValueError: for a missing ``dataset`` / ``batch_size``, a batch size the
        processes do not divide, and as :class:`BatchIterator` and ``load_dataset``.
    """
    name = _cfg(config, "dataset")
    if name is None:
        raise ValueError("`config.dataset` must name a data set")
    info = get_dataset_info(name)
    training = split == "train" if training is None else bool(training)
    batch_size = _cfg(config, "batch_size")
    if not training:
        batch_size = _cfg(config, "eval_batch_size") or batch_size
    key = "batch_size" if training else "eval_batch_size"
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"`config.{key}` (={batch_size!r}) must be a positive int")
    if not is_int(process_count) or process_count < 1:
        raise ValueError(f"`process_count` (={process_count!r}) must be a positive int")
    if batch_size % process_count:
        raise ValueError(
            f"`config.{key}` (={batch_size}) must be divisible by `process_count` "
            f"(={process_count})"
        )

    load_args = (
        info.name,
        _cfg(config, "data_dir"),
        _cfg(config, "cache_dir"),
        _cfg(config, "source") or "local",
        _cfg(config, "tfds_data_dir"),
        tuple(sorted(dict(_cfg(config, "dataset_options") or {}).items())),
    )
    if data is not None:
        arrays = dict(data)
    else:
        name, data_dir, cache_dir, source, tfds_data_dir, options = load_args
        arrays = load_dataset(
            name,
            split,
            data_dir,
            cache_dir=cache_dir,
            source=source,
            tfds_data_dir=tfds_data_dir,
            **dict(options),
        )

    def train_statistic(kind: str, pad_to: int | None) -> np.ndarray:
        if data is not None and split == "train":
            return _statistic(kind, arrays["image"], pad_to)
        return _train_statistic(kind, pad_to, load_args)

    transform = _image_transform(config, info.input_key, train_statistic)
    return BatchIterator(
        arrays,
        batch_size // process_count,
        rng_seed=rng_seed,
        training=training,
        shuffle=_cfg(config, "shuffle", True) if training else False,
        num_epochs=_cfg(config, "num_epochs") if training else 1,
        process_index=process_index,
        process_count=process_count,
        start_step=start_step,
        transform=transform,
    )


def data_sharding(mesh: Mesh | None = None, axis: str = "data") -> NamedSharding:
    """A sharding that splits the batch axis over a mesh axis.

    Args:
      mesh: the device mesh (default: a 1-D mesh over all devices, axis ``axis``).
      axis: the mesh axis for the batch.

    Returns:
      ``NamedSharding(mesh, PartitionSpec(axis))``.

    Raises:
      ValueError: if ``axis`` is not an axis of ``mesh``.
    """
    if mesh is None:
        mesh = Mesh(np.array(jax.devices()), (axis,))
    if axis not in mesh.axis_names:
        raise ValueError(f"`axis` (={axis!r}) is not an axis of the mesh {mesh.axis_names}")
    return NamedSharding(mesh, PartitionSpec(axis))


def prefetch_to_device(
    iterator: Iterable[Any], size: int = 2, sharding: jax.sharding.Sharding | None = None
) -> Iterator[Any]:
    """Keeps ``size`` batches in flight on the device(s) ahead of the consumer.

    ``jax.device_put`` is asynchronous, so the host-to-device copies of the next batches
    overlap with the computation on the current one.

    Args:
      iterator: batches (pytrees of numpy arrays).
      size: how many batches to keep on the device, at least 1.
      sharding: where to put them, e.g. :func:`data_sharding` to split the batch axis
        over the devices; ``None`` puts them on the default device. In multi-process
        runs each process' batch is its local part of the global batch
        (``jax.make_array_from_process_local_data``).

    Yields:
      The batches, as ``jax.Array`` pytrees.

    Raises:
      ValueError: if ``size`` is not a positive int.
    """
    if not is_int(size) or size < 1:
        raise ValueError(f"`size` (={size!r}) must be a positive int")

    def put(batch: Any) -> Any:
        if sharding is None:
            return jax.device_put(batch)
        if jax.process_count() > 1:  # pragma: no cover - multi-host only
            return jax.tree.map(
                lambda x: jax.make_array_from_process_local_data(sharding, x), batch
            )
        return jax.device_put(batch, sharding)

    queue: collections.deque = collections.deque()
    it = iter(iterator)
    for batch in it:
        queue.append(put(batch))
        if len(queue) >= size:
            break
    while queue:
        yield queue.popleft()
        for batch in it:
            queue.append(put(batch))
            break
