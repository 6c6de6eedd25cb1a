"""Data: MNIST, CIFAR-10, FSDD and MR as numpy arrays, input pipelines, augmentation.

* :func:`load_dataset` reads a split as a dict of numpy arrays, from the local data
  directory (``source='local'``, offline: ``config.data_dir``, ``CNN_JAX_DATA_DIR`` or
  ``../shared/data``) or through tensorflow-datasets (``source='tfds'``); decoded
  arrays are cached as ``.npz`` files (``config.cache_dir``, ``CNN_JAX_CACHE_DIR`` or
  ``~/.cache/cnn_jax``). See :mod:`cnn_jax.data.datasets`.
* :func:`input_pipeline` (:mod:`cnn_jax.data.pipeline`) turns a split into
  per-process, shuffled, resumable batches (:class:`BatchIterator`,
  :mod:`cnn_jax.data.batching`); :func:`prefetch_to_device` overlaps their transfer with
  compute (:mod:`cnn_jax.data.device`).
* :mod:`cnn_jax.data.preprocess`: standardization, mean subtraction, padding.
* :mod:`cnn_jax.data.augmentations`: jit-able augmentations by name (:func:`augment`),
  one module per kind (geometric, color, noise, filters).
* :func:`safe_extract`: unpacking archives without path traversal or links.
"""

from cnn_jax.data import (
    augmentations,
    digit_segmentation,
    multimnist,
    preprocess,
    segmentation_tfds,
    text,
    whitening,
)
from cnn_jax.data.archive import UnsafeArchiveError, iter_archive_files, safe_extract
from cnn_jax.data.augmentations import (
    augment,
    augmentation_names,
    get_augmentation,
    needs_unit_range,
)
from cnn_jax.data.datasets import (
    DATASETS,
    DatasetInfo,
    dataset_names,
    get_dataset_info,
    load_dataset,
    load_vocabulary,
)
from cnn_jax.data.paths import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    DatasetNotFoundError,
    resolve_cache_dir,
    resolve_data_dir,
)
from cnn_jax.data.pipeline import BatchIterator, data_sharding, input_pipeline, prefetch_to_device
from cnn_jax.data.preprocess import (
    DATASET_STATS,
    channel_mean,
    channel_std,
    mean_image,
    normalize,
    pad_images,
    standardize,
    subtract_mean,
    to_float,
)

multimnist.register()  # the generated data sets: multimnist, affnist_like
whitening.register()  # the augmentation pca_colour_noise
digit_segmentation.register()  # the generated digit_segmentation
segmentation_tfds.register()  # tfds segmentation sets: oxford_iiit_pet_seg

__all__ = [
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATASET_STATS",
    "DATA_DIR_ENV",
    "BatchIterator",
    "DatasetInfo",
    "DatasetNotFoundError",
    "UnsafeArchiveError",
    "augment",
    "augmentation_names",
    "augmentations",
    "channel_mean",
    "channel_std",
    "data_sharding",
    "dataset_names",
    "digit_segmentation",
    "get_augmentation",
    "get_dataset_info",
    "input_pipeline",
    "iter_archive_files",
    "load_dataset",
    "load_vocabulary",
    "mean_image",
    "multimnist",
    "needs_unit_range",
    "normalize",
    "pad_images",
    "prefetch_to_device",
    "preprocess",
    "resolve_cache_dir",
    "resolve_data_dir",
    "safe_extract",
    "segmentation_tfds",
    "standardize",
    "subtract_mean",
    "text",
    "to_float",
    "whitening",
]
