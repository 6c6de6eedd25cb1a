"""What the library knows about each data set: ``DatasetInfo``, ``DATASETS``, option checks.

Public through ``cnn_jax.data`` and ``cnn_jax.data.datasets``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnn_jax.data._readers import (
    CIFAR10_CLASSES,
    CIFAR_FILE,
    FSDD_FILE,
    MNIST_FILES,
    MR_FILES,
    MR_NUM_FOLDS,
)
from cnn_jax.data.paths import DatasetNotFoundError
from cnn_jax.ops._validate import is_int

__all__ = [
    "DATASETS",
    "SOURCES",
    "DatasetInfo",
    "check_options",
    "check_source",
    "check_split",
    "dataset_names",
    "get_dataset_info",
    "missing_error",
]

#: Values of ``source``.
SOURCES = ("local", "tfds")


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
    """What the library knows about a data set.

    Attributes:
      name: the canonical name (``load_dataset``'s ``name``).
      description: one line.
      input_key: the key of the model input in the arrays (``'image'``, ``'audio'``,
        ``'tokens'``).
      num_classes: the number of labels.
      class_names: the label names, by id.
      split_sizes: the examples in each split of the local copy (MR: with ``fold=0``).
      files: the files the local reader needs, relative to the data directory.
      how_to_get: where the files come from, for error messages.
      tfds_name: the tensorflow-datasets name (``source='tfds'``).
      options: the data set's options and their defaults.
    """

    name: str
    description: str
    input_key: str
    num_classes: int
    class_names: tuple[str, ...]
    split_sizes: Mapping[str, int]
    files: tuple[str, ...]
    how_to_get: str
    tfds_name: str
    options: Mapping[str, Any]

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names."""
        return tuple(self.split_sizes)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 28x28x1",
        input_key="image",
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        split_sizes={"train": 60000, "test": 10000},
        files=(*MNIST_FILES["train"], *MNIST_FILES["test"]),
        how_to_get="the four gzipped IDX files of http://yann.lecun.com/exdb/mnist/",
        tfds_name="mnist",
        options={},
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        description="CIFAR-10, 32x32x3 (the local copy is JPEG re-encoded)",
        input_key="image",
        num_classes=10,
        class_names=CIFAR10_CLASSES,
        split_sizes={"train": 50000, "test": 10000},
        files=(CIFAR_FILE,),
        how_to_get=(
            "a .tar.gz of CIFAR-10 in the ImageFolder layout, train/<class>/NNNN.jpg and "
            "test/<class>/NNNN.jpg (classes airplane ... truck)"
        ),
        tfds_name="cifar10",
        options={},
    ),
    "fsdd": DatasetInfo(
        name="fsdd",
        description="Free Spoken Digit Dataset, 8 kHz mono waveforms",
        input_key="audio",
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        split_sizes={"train": 2700, "test": 300},
        files=(FSDD_FILE,),
        how_to_get=(
            "a .tar.gz of the recordings/ folder of "
            "https://github.com/Jakobovski/free-spoken-digit-dataset "
            "(recordings/{digit}_{speaker}_{index}.wav)"
        ),
        tfds_name="spoken_digit",
        options={"audio_length": 8000, "test_speakers": None},
    ),
    "mr": DatasetInfo(
        name="mr",
        description="Movie Review sentence polarity (Pang & Lee 2005), Kim (2014)'s MR",
        input_key="tokens",
        num_classes=2,
        class_names=("negative", "positive"),
        split_sizes={"train": 9595, "test": 1067},
        files=MR_FILES,
        how_to_get=(
            "rt-polarity.pos and rt-polarity.neg from "
            "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz"
        ),
        tfds_name="rt_polarity",
        options={"max_length": None, "min_count": 1, "seed": 0, "fold": 0},
    ),
    "imagenet2012": DatasetInfo(
        name="imagenet2012",
        description="ImageNet ILSVRC-2012, 1000 classes; decoded and augmented lazily",
        input_key="image",
        num_classes=1000,
        class_names=(),
        split_sizes={"train": 1_281_167, "test": 50_000},
        files=(),
        how_to_get=(
            "the ILSVRC-2012 train and validation images in class folders, "
            "imagenet2012/{train,val}/<wnid>/*.JPEG"
        ),
        tfds_name="imagenet2012",
        options={"image_size": 224, "resize_size": None, "seed": 0, "num_workers": 8},
    ),
    "synthetic": DatasetInfo(
        name="synthetic",
        description="synthetic images: a colour pattern per class plus noise (runlocal)",
        input_key="image",
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        split_sizes={"train": 512, "test": 128},
        files=(),
        how_to_get="nothing: generated",
        tfds_name="",
        options={"image_size": 32, "channels": 3, "train_size": 512, "test_size": 128, "seed": 0},
    ),
}

_ALIASES = {
    "spoken_digit": "fsdd",
    "rt_polarity": "mr",
    "cifar-10": "cifar10",
    "imagenet": "imagenet2012",
}


def dataset_names() -> tuple[str, ...]:
    """The canonical data set names."""
    return tuple(DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    """Looks a data set up by name (or an alias: ``spoken_digit``, ``rt_polarity``).

    Args:
      name: the data set's name.

    Returns:
      Its :class:`DatasetInfo`.

    Raises:
      ValueError: if the name is unknown.
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str, got {name!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        known = ", ".join(repr(n) for n in (*DATASETS, *_ALIASES))
        raise ValueError(f"unknown data set `name` (={name!r}); known: {known}")
    return DATASETS[key]


def check_options(info: DatasetInfo, options: Mapping[str, Any]) -> dict[str, Any]:
    """The data set's options with defaults filled in; ints as Python ints.

    Raises:
      TypeError: for an unknown option (or a non-int MR ``seed``).
      ValueError: for an option value out of range.
    """
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        allowed = ", ".join(info.options) or "none"
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for data set {info.name!r} "
            f"(options: {allowed})"
        )
    opts = {**info.options, **options}
    if info.name == "fsdd":
        n = opts["audio_length"]
        if not is_int(n) or n < 1:
            raise ValueError(f"`audio_length` (={n!r}) must be a positive int")
        speakers = opts["test_speakers"]
        if speakers is not None:
            if (
                isinstance(speakers, str)
                or not isinstance(speakers, tuple | list)
                or not speakers
                or not all(isinstance(s, str) for s in speakers)
            ):
                raise ValueError(
                    f"`test_speakers` (={speakers!r}) must be None or a non-empty tuple of "
                    "speaker names"
                )
            opts["test_speakers"] = tuple(sorted(set(speakers)))
    elif info.name == "mr":
        n = opts["max_length"]
        if n is not None and (not is_int(n) or n < 1):
            raise ValueError(f"`max_length` (={n!r}) must be a positive int or None")
        if not is_int(opts["min_count"]) or opts["min_count"] < 1:
            raise ValueError(f"`min_count` (={opts['min_count']!r}) must be a positive int")
        if not is_int(opts["seed"]):
            raise TypeError(f"`seed` (={opts['seed']!r}) must be an int")
        if not is_int(opts["fold"]) or not 0 <= opts["fold"] < MR_NUM_FOLDS:
            raise ValueError(f"`fold` (={opts['fold']!r}) must be an int in [0, {MR_NUM_FOLDS})")
    elif info.name in ("imagenet2012", "synthetic"):
        for key, value in opts.items():
            if key == "resize_size" and value is None:
                continue
            if key == "seed":
                if not is_int(value) or value < 0:
                    raise ValueError(f"`seed` (={value!r}) must be a non-negative int")
            elif not is_int(value) or value < 1:
                raise ValueError(f"`{key}` (={value!r}) must be a positive int")
    return {k: (int(v) if is_int(v) else v) for k, v in opts.items()}


def check_split(info: DatasetInfo, split: str) -> str:
    """Returns ``split``; a ``ValueError`` names the data set's splits if it is not one."""
    if not isinstance(split, str) or split not in info.split_sizes:
        raise ValueError(
            f"`split` (={split!r}) must be one of {', '.join(map(repr, info.splits))} "
            f"for data set {info.name!r}"
        )
    return split


def check_source(source: str) -> str:
    """Returns ``source``; a ``ValueError`` if it is not one of ``SOURCES``."""
    if source not in SOURCES:
        raise ValueError(f"`source` (={source!r}) must be one of {', '.join(map(repr, SOURCES))}")
    return source


def missing_error(
    info: DatasetInfo, data_dir: Path, origin: str, missing: list[str]
) -> DatasetNotFoundError:
    """The error for missing local files: which files to put where, or how to use tfds."""
    paths = ", ".join(os.fspath(data_dir / m) for m in missing)
    return DatasetNotFoundError(
        f"data set {info.name!r} not found: missing {paths}. The data directory "
        f"{os.fspath(data_dir)!r} comes from {origin}; put {info.how_to_get} at exactly "
        f"{'those paths' if len(missing) > 1 else 'that path'} (archives stay packed), or point "
        "`data_dir` / config.data_dir / the environment variable CNN_JAX_DATA_DIR at a "
        "folder laid out that way. Alternatively read it through tensorflow-datasets: "
        f"load_dataset({info.name!r}, split, source='tfds') (tfds name {info.tfds_name!r}; "
        "preparing it needs internet access"
        + (")." if info.name == "mr" else " and `pip install tensorflow`).")
    )
