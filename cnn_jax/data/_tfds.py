"""The tensorflow-datasets source of ``cnn_jax.data.load_dataset`` (``source='tfds'``).

Prepares a data set in the ``array_record`` format if needed and reads it through
``tfds`` data sources (no TensorFlow needed to read; preparing ``mnist``, ``cifar10``
and ``spoken_digit`` needs it). FSDD and MR records go through the local readers'
finalizers, so both sources give the same arrays for the same records.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from cnn_jax.data._catalog import DatasetInfo
from cnn_jax.data._readers import FSDD_MEMBER, MR_FILES, Splits, fsdd_finalize, mr_finalize

__all__ = ["tfds_arrays"]


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - tfds is a dependency
        raise ImportError(
            "source='tfds' needs tensorflow-datasets: `pip install tensorflow-datasets` "
            "(and `pip install tensorflow` to prepare mnist, cifar10 or spoken_digit)"
        ) from e
    return tfds


def _tfds_builder(info: DatasetInfo, tfds_data_dir: str | None):
    tfds = _import_tfds()
    if info.name == "mr":
        from cnn_jax.data.tfds_builders import RtPolarity

        return RtPolarity(data_dir=tfds_data_dir)
    return tfds.builder(info.tfds_name, data_dir=tfds_data_dir)


def _tfds_records(
    info: DatasetInfo, tfds_split: str, data_dir: Path, tfds_data_dir: str | None
) -> list[dict[str, Any]]:
    """Prepares (if needed) and reads one tfds split as a list of numpy records."""
    tfds = _import_tfds()
    builder = _tfds_builder(info, tfds_data_dir)
    if not builder.is_prepared():
        if importlib.util.find_spec("importlib_resources") is None:
            # tensorflow-datasets 4.9 imports it while preparing any data set but only
            # declares it for Python < 3.9.
            raise ImportError(
                "preparing a tensorflow-datasets data set needs `importlib_resources`: "
                "`pip install importlib_resources`"
            )
        download_config = None
        if info.name == "mr":
            if all((data_dir / f).is_file() for f in MR_FILES):
                manual = os.fspath(data_dir / "rt_polarity")
                download_config = tfds.download.DownloadConfig(manual_dir=manual)
        elif importlib.util.find_spec("tensorflow") is None:
            raise ImportError(
                f"preparing the tensorflow-datasets data set {info.tfds_name!r} needs "
                "TensorFlow, which is not installed: `pip install tensorflow` (reading an "
                "already prepared array_record copy does not), or use source='local'"
            )
        builder.download_and_prepare(file_format="array_record", download_config=download_config)
    try:
        source = builder.as_data_source(split=tfds_split)
        records = [source[i] for i in range(len(source))]
    except NotImplementedError:  # pragma: no cover - prepared as tfrecord, needs TF
        records = list(tfds.as_numpy(builder.as_dataset(split=tfds_split)))
    return records


def tfds_arrays(
    info: DatasetInfo, data_dir: Path, tfds_data_dir: str | None, opts: dict, split: str
) -> Splits:
    """A data set's arrays from tfds: ``(splits, extras)`` as the local readers give.

    Image data sets are read split by split (``splits`` holds ``split`` only); FSDD and
    MR are one tfds split that is cut into train and test as the local copies are;
    segmentation sets go through ``cnn_jax.data.segmentation_tfds``.
    """
    from cnn_jax.data import segmentation_tfds

    if segmentation_tfds.is_registered(info.name):
        return segmentation_tfds.tfds_segmentation_arrays(
            info, lambda s: _tfds_records(info, s, data_dir, tfds_data_dir), opts, split
        )
    if info.name in ("mnist", "cifar10"):
        records = _tfds_records(info, split, data_dir, tfds_data_dir)
        arrays = {
            "image": np.stack([np.asarray(r["image"], np.uint8) for r in records]),
            "label": np.array([r["label"] for r in records], np.int32),
        }
        return {split: arrays}, {}
    if info.name == "fsdd":
        records = _tfds_records(info, "train", data_dir, tfds_data_dir)
        parsed = []
        for r in records:
            fname = r["audio/filename"]
            fname = fname.decode() if isinstance(fname, bytes) else str(fname)
            m = FSDD_MEMBER.match(fname)
            if m is None:  # pragma: no cover - tfds' file names follow the pattern
                raise ValueError(f"spoken_digit: unexpected file name {fname!r}")
            wav = np.asarray(r["audio"]).reshape(-1)
            parsed.append((int(m.group(1)), m.group(2), int(m.group(3)), wav))
        return fsdd_finalize(parsed, opts)
    records = _tfds_records(info, "train", data_dir, tfds_data_dir)
    records.sort(key=lambda r: int(r["index"]))
    sentences = [
        r["sentence"].decode() if isinstance(r["sentence"], bytes) else str(r["sentence"])
        for r in records
    ]
    labels = np.array([r["label"] for r in records], np.int32)
    return mr_finalize(sentences, labels, opts)
