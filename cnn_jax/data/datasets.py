"""Data sets as dicts of numpy arrays: MNIST, CIFAR-10, FSDD (spoken digits) and MR.

Two sources give the same arrays:

* ``source='local'`` (the default, offline): small numpy readers of the files in the
  data directory (see :mod:`cnn_jax.data.paths`; ``../shared/data`` in a development
  checkout). Layout, relative to the data directory::

      mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   the original IDX files
      cifar10_jpeg/cifar10_jpeg.tar.gz   {train,test}/<class>/NNNN.jpg (ImageFolder)
      fsdd/fsdd_recordings.tar.gz        recordings/{digit}_{speaker}_{index}.wav
      rt_polarity/rt-polarity.{pos,neg}  one sentence a line, latin-1

  Decoding CIFAR-10's JPEGs needs Pillow. Note that this CIFAR-10 copy is JPEG
  re-encoded (quality about 75): accuracies on it run somewhat below those on the
  original pixels.
* ``source='tfds'``: tensorflow-datasets (``mnist``, ``cifar10``, ``spoken_digit``, and
  :class:`cnn_jax.data.tfds_builders.RtPolarity` for MR, which tfds lacks), prepared in
  the ``array_record`` format and read through ``tfds`` data sources, which need no
  TensorFlow. *Preparing* ``mnist``, ``cifar10`` and ``spoken_digit`` downloads them
  and needs TensorFlow (``pip install tensorflow``); the MR builder needs neither when
  the two ``rt-polarity`` files are in the data directory. tfds' ``cifar10`` holds the
  original (not JPEG re-encoded) pixels, and tfds' ``spoken_digit`` is FSDD v1.0.9
  (2,500 recordings), so counts differ from the local copies.

Splits:

* MNIST 60,000 / 10,000 and CIFAR-10 50,000 / 10,000: the canonical ones.
* FSDD: the data set's standard split, recordings with index 0-4 of every speaker and
  digit are ``test`` (300 locally), the rest ``train`` (2,700 locally); with the option
  ``test_speakers`` (speaker names, e.g. ``('theo',)``) the named speakers' recordings
  are ``test`` and the other speakers' ``train``: a speaker-independent split.
* MR has no official split; Kim (2014) reports 10-fold cross-validation. Here the
  10,662 sentences are permuted with ``np.random.default_rng(seed)`` and cut into 10
  folds (``np.array_split``); fold ``fold`` is ``test`` (1,067 sentences for fold 0),
  the other nine ``train``: a deterministic 90/10 split. Averaging over ``fold=0..9``
  gives the 10-fold CV protocol.

Arrays (every array has the examples on axis 0):

* images: ``image`` uint8 ``(N, H, W, C)`` (NHWC), ``label`` int32.
* FSDD: ``audio`` float32 ``(N, audio_length, 1)`` in ``[-1, 1)`` at 8 kHz (int16 / 32768),
  zero-padded or cropped at the end to ``audio_length``; ``length`` int32 (samples kept);
  ``label`` int32 (the digit); ``speaker`` int32 (index into the sorted speaker names).
* MR: ``tokens`` int32 ``(N, max_length)`` (ids into the vocabulary, 0 = padding, 1 =
  unknown; see :mod:`cnn_jax.data.text` for the tokenizer), ``length`` int32,
  ``label`` int32 (0 negative, 1 positive), ``index`` int32 (the sentence's position
  in ``rt-polarity.neg`` followed by ``rt-polarity.pos``). The vocabulary is built on the training
  folds only: :func:`load_vocabulary`.

Decoded arrays are cached as ``.npz`` files in the cache directory, keyed by the
options and a SHA-256 of the source files' contents; a cache file that cannot be read
is decoded again, and a cache directory that cannot be written is skipped, each with a
logged warning naming the path (see :mod:`cnn_jax.data._cache`).

Every split's labels are checked when it is loaded, decoded or from the cache: a label
outside ``[0, num_classes)`` is a ``ValueError`` naming the split and the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnn_jax.data._cache import fingerprint, load_entry, save_entry
from cnn_jax.data._catalog import (
    DATASETS,
    SOURCES,
    DatasetInfo,
    check_options,
    check_source,
    check_split,
    dataset_names,
    get_dataset_info,
    missing_error,
)
from cnn_jax.data._readers import CIFAR10_CLASSES, LOCAL_READERS, MR_NUM_FOLDS
from cnn_jax.data._tfds import tfds_arrays
from cnn_jax.data.imagenet import imagenet_arrays, synthetic
from cnn_jax.data.paths import resolve_cache_dir, resolve_data_dir

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "MR_NUM_FOLDS",
    "SOURCES",
    "DatasetInfo",
    "dataset_names",
    "get_dataset_info",
    "load_dataset",
    "load_vocabulary",
]

Arrays = dict[str, np.ndarray]


def _check_labels(info: DatasetInfo, split: str, arrays: Arrays) -> Arrays:
    """Returns ``arrays``; a ``ValueError`` if a label is not an int in ``[0, num_classes)``."""
    labels = arrays.get("label")
    if labels is None:
        return arrays
    labels = np.asarray(labels)
    where = f"data set {info.name!r}, split {split!r}"
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    # Dense labels (segmentation) may hold the data set's ignore label.
    ignore = info.options.get("ignore_label")
    out = (labels < 0) | (labels >= info.num_classes)
    if ignore is not None:
        out &= labels != ignore
    bad = np.flatnonzero(out.reshape(len(labels), -1).any(axis=1)) if labels.ndim else []
    if len(bad):
        i = int(bad[0])
        value = int(labels[i][out[i]].flat[0]) if labels.ndim > 1 else int(labels[i])
        raise ValueError(
            f"{where}: label {value} (example {i}; {len(bad)} example(s) in all) is "
            f"outside [0, {info.num_classes}), num_classes={info.num_classes}"
        )
    return arrays


def _load_all(
    name: str,
    split: str | None,
    data_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike | None,
    source: str,
    tfds_data_dir: str | os.PathLike | None,
    use_cache: bool,
    options: Mapping[str, Any],
) -> tuple[Arrays | None, Arrays]:
    info = get_dataset_info(name)
    if split is not None:
        check_split(info, split)
    check_source(source)
    opts = check_options(info, options)
    root, origin = resolve_data_dir(data_dir)
    tfds_dir = None if tfds_data_dir is None else os.fspath(tfds_data_dir)

    if source == "local":
        missing = [f for f in info.files if not (root / f).is_file()]
        if missing:
            raise missing_error(info, root, origin, missing)
        fp = fingerprint(info.name, source, opts, [root / f for f in info.files], "")
    else:
        fp = fingerprint(info.name, source, opts, [], tfds_dir or "default")
    cache = resolve_cache_dir(cache_dir)
    stem = f"{info.name}_{source}_{fp}"
    if use_cache:
        extras = load_entry(cache / f"{stem}_extras.npz")
        arrays = None if split is None else load_entry(cache / f"{stem}_{split}.npz")
        if extras is not None and (split is None or arrays is not None):
            return (None if arrays is None else _check_labels(info, split, arrays)), extras

    if source == "local":
        splits, extras = LOCAL_READERS[info.name](root, opts)
    else:
        # tfds reads image data sets split by split; the others need all of them at once.
        splits, extras = tfds_arrays(info, root, tfds_dir, opts, split or "train")
    if use_cache:
        entries = [(f"{stem}_{s}.npz", arrays) for s, arrays in splits.items()]
        for file, arrays in [*entries, (f"{stem}_extras.npz", extras)]:
            if not save_entry(cache / file, arrays):
                break
    return (None if split is None else _check_labels(info, split, splits[split])), extras


def load_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    source: str = "local",
    tfds_data_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    **options: Any,
) -> Arrays:
    """Loads one split of a data set as a dict of numpy arrays (see the module docstring).

    Args:
      name: ``'mnist'``, ``'cifar10'``, ``'fsdd'`` (alias ``'spoken_digit'``) or
        ``'mr'`` (alias ``'rt_polarity'``).
      split: ``'train'`` or ``'test'``.
      data_dir: the data directory (default: ``CNN_JAX_DATA_DIR``, else
        ``<repository root>/../shared/data``); only read, never written.
      cache_dir: where decoded arrays are cached (default: ``CNN_JAX_CACHE_DIR``, else
        ``~/.cache/cnn_jax``).
      source: ``'local'`` (numpy readers of the data directory) or ``'tfds'``
        (tensorflow-datasets; see the module docstring for what that needs).
      tfds_data_dir: the tensorflow-datasets data directory for ``source='tfds'``
        (default: tfds' own, ``~/tensorflow_datasets``).
      use_cache: read and write the ``.npz`` cache.
      **options: data-set options: FSDD ``audio_length`` (default 8000 samples, 1 s)
        and ``test_speakers`` (default ``None``: the index split);
        MR ``max_length`` (default ``None``: the longest training sentence),
        ``min_count`` (default 1), ``seed`` (default 0) and ``fold`` (0-9, default 0).

    Returns:
      A dict of numpy arrays with the examples on axis 0.

    Raises:
      ValueError: for an unknown ``name``, ``split`` or ``source``, a bad option value,
        or a label outside ``[0, num_classes)`` (naming the split and the value).
      TypeError: for an unknown option.
      DatasetNotFoundError: if a file the local reader needs is missing; the message
        says which file to put where, and how to use tfds instead.
      ImportError: if ``source='tfds'`` must prepare a data set and TensorFlow is missing.
    """
    info = get_dataset_info(name)
    if info.name == "synthetic":
        opts = check_options(info, options)
        return synthetic(check_split(info, split), num_classes=info.num_classes, **opts)
    if info.name == "imagenet2012":
        opts = check_options(info, options)
        root, _ = resolve_data_dir(data_dir)
        arrays = imagenet_arrays(
            check_split(info, split),
            root,
            source=check_source(source),
            tfds_data_dir=None if tfds_data_dir is None else os.fspath(tfds_data_dir),
            **opts,
        )
        return _check_labels(info, split, arrays)
    arrays, _ = _load_all(
        name, split, data_dir, cache_dir, source, tfds_data_dir, use_cache, options
    )
    assert arrays is not None
    return arrays


def load_vocabulary(
    name: str = "mr",
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    source: str = "local",
    tfds_data_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    **options: Any,
) -> list[str]:
    """The vocabulary of a text data set, built on its training split.

    Args:
      name: a text data set (``'mr'``).
      data_dir: as in :func:`load_dataset`.
      cache_dir: as in :func:`load_dataset`.
      source: as in :func:`load_dataset`.
      tfds_data_dir: as in :func:`load_dataset`.
      use_cache: as in :func:`load_dataset`.
      **options: as in :func:`load_dataset`; pass the same ones (``seed``, ``fold``,
        ``min_count``) as for the arrays.

    Returns:
      The tokens; a token's id is its index (0 padding, 1 unknown).

    Raises:
      ValueError: if the data set has no vocabulary, and as :func:`load_dataset`.
    """
    info = get_dataset_info(name)
    if info.input_key != "tokens":
        raise ValueError(f"data set `name` (={name!r}) is not a text data set")
    _, extras = _load_all(
        name, None, data_dir, cache_dir, source, tfds_data_dir, use_cache, options
    )
    return [str(t) for t in extras["vocabulary"]]
