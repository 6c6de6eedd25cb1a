"""Input pipelines from a config: batches of a data set split for one process.

:func:`input_pipeline` loads a split (:func:`cnn_jax.data.load_dataset`), optionally pads
and normalizes its images on the host, and returns a :class:`BatchIterator` (see
:mod:`cnn_jax.data.batching` for the sharding, shuffling, padding and resuming rules).
:func:`data_sharding` and :func:`prefetch_to_device` (:mod:`cnn_jax.data.device`) put the
batches on the devices; they and ``BatchIterator`` are importable from here too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cnn_jax.data import preprocess
from cnn_jax.data.batching import Batch, BatchIterator
from cnn_jax.data.datasets import get_dataset_info, load_dataset
from cnn_jax.data.device import data_sharding, prefetch_to_device
from cnn_jax.ops._validate import is_int

__all__ = [
    "NORMALIZATIONS",
    "BatchIterator",
    "data_sharding",
    "input_pipeline",
    "prefetch_to_device",
]

#: Values of ``config.normalization``.
NORMALIZATIONS = (None, "standardize", "channel_mean", "mean_image", "zca")


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
    if kind == "zca":  # cnn_jax.data.whitening: ZCA of whole images, eps 1e-2
        from cnn_jax.data.whitening import fit_whitening

        return fit_whitening(images, "zca")
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
    elif norm == "zca":
        zca = train_statistic(norm, pad_to)
    elif norm in ("channel_mean", "mean_image"):
        mean = train_statistic(norm, pad_to)
        std = np.ones_like(mean)

    def transform(batch: Batch) -> Batch:
        x = pad(batch["image"])  # zeros: the background, before normalization
        if norm == "zca":
            x = zca(x)
        elif norm is not None:
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
      units; or ``'zca'`` (ZCA whitening of whole images fitted on the training set,
      :func:`cnn_jax.data.whitening.fit_whitening` with its default ``eps``).
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
