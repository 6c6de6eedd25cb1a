"""Real segmentation data sets through tensorflow-datasets, as arrays like ``digit_segmentation``.

``load_dataset('oxford_iiit_pet_seg', split, source='tfds')`` reads tfds'
``oxford_iiit_pet`` (Parkhi et al. 2012; 3,680 train / 3,669 test images with trimaps)
and returns ``image`` uint8 ``(N, S, S, 3)`` and ``label`` int32 ``(N, S, S)``, every
image resized to ``image_size`` (bilinear) and every label map with nearest
neighbours, so that they stay aligned. The trimap's values become classes: 2
(background) -> 0, 1 (pet) -> 1, 3 (the uncertain border) -> the ignore label 255,
which the segmentation losses and metrics skip (``cnn_jax.train.losses_dense``).

Other tfds sets with per-pixel masks plug in the same way: a :class:`SegmentationSource`
(the tfds name, the record keys, the mapping of mask values to classes) and a catalog
entry, passed to :func:`register_tfds_segmentation`. Reading needs
``tensorflow-datasets``; preparing (downloading) a set needs internet access and
TensorFlow. There is no local copy: ``source='local'`` raises a
``DatasetNotFoundError`` that says to use ``source='tfds'``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cnn_jax.data._catalog import DATASETS, DatasetInfo
from cnn_jax.data._readers import LOCAL_READERS, Splits
from cnn_jax.data.paths import DatasetNotFoundError
from cnn_jax.ops._validate import is_int

__all__ = [
    "IGNORE_LABEL",
    "OXFORD_PETS",
    "SegmentationSource",
    "records_to_arrays",
    "register_tfds_segmentation",
]

#: Pixels that no loss or metric counts.
IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class SegmentationSource:
    """How to read a tfds segmentation set.

    Attributes:
      tfds_name: the tfds name (``'oxford_iiit_pet'``).
      image_key: the record's image.
      mask_key: the record's mask, ``(H, W)`` or ``(H, W, 1)`` ints.
      label_map: mask value -> class (or ``IGNORE_LABEL``); values not listed are ignored.
      splits: our split name -> the tfds split.
    """

    tfds_name: str
    image_key: str
    mask_key: str
    label_map: Mapping[int, int]
    splits: Mapping[str, str]


def _resize(x: np.ndarray, size: int, method: str) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(x, jnp.float32)
    out = jax.image.resize(x, (size, size, x.shape[-1]), method)
    return np.asarray(out)


def records_to_arrays(
    records: list[Mapping[str, Any]], source: SegmentationSource, image_size: int
) -> dict[str, np.ndarray]:
    """Decoded tfds records as ``image`` ``(N, S, S, C)`` uint8 and ``label`` ``(N, S, S)``.

    Args:
      records: tfds records (dicts of numpy arrays).
      source: the keys and the mask's class mapping.
      image_size: ``S``; images are resized bilinearly, masks by nearest neighbour.

    Returns:
      The arrays; mask values outside ``source.label_map`` become ``IGNORE_LABEL``.

    Raises:
      ValueError: for a non-positive ``image_size`` or a mask whose size is not the image's.
    """
    if not is_int(image_size) or image_size < 1:
        raise ValueError(f"`image_size` (={image_size!r}) must be a positive int")
    lut = np.full(256, IGNORE_LABEL, np.int32)
    for value, cls in source.label_map.items():
        lut[value] = cls
    images, labels = [], []
    for i, r in enumerate(records):
        img = np.asarray(r[source.image_key])
        mask = np.asarray(r[source.mask_key])
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.shape != img.shape[:2]:
            raise ValueError(
                f"record {i}: the mask's shape {mask.shape} is not the image's {img.shape[:2]}"
            )
        images.append(np.clip(np.rint(_resize(img, image_size, "bilinear")), 0, 255))
        near = _resize(mask[..., None].astype(np.float32), image_size, "nearest")[..., 0]
        labels.append(lut[np.clip(near.astype(np.int64), 0, 255)])
    return {"image": np.stack(images).astype(np.uint8), "label": np.stack(labels)}


#: The Oxford-IIIT Pet trimaps as background / pet, the border ignored.
PETS_SOURCE = SegmentationSource(
    tfds_name="oxford_iiit_pet",
    image_key="image",
    mask_key="segmentation_mask",
    label_map={2: 0, 1: 1, 3: IGNORE_LABEL},
    splits={"train": "train", "test": "test"},
)

#: The catalog entry of ``oxford_iiit_pet_seg``.
OXFORD_PETS = DatasetInfo(
    name="oxford_iiit_pet_seg",
    description="Oxford-IIIT Pet trimaps as background/pet segmentation (tfds only)",
    input_key="image",
    num_classes=2,
    class_names=("background", "pet"),
    split_sizes={"train": 3680, "test": 3669},
    files=(),
    how_to_get="tensorflow-datasets' oxford_iiit_pet (source='tfds')",
    tfds_name="oxford_iiit_pet",
    options={"image_size": 128, "ignore_label": IGNORE_LABEL},
)

_SOURCES: dict[str, SegmentationSource] = {}


def _no_local_copy(root: Path, opts: dict) -> Splits:
    raise DatasetNotFoundError(
        "this segmentation data set has no local copy; read it through tensorflow-datasets "
        "with source='tfds' (config.source='tfds'; preparing it needs internet access)"
    )


def tfds_segmentation_arrays(info: DatasetInfo, records_for: Any, opts: dict, split: str) -> Splits:
    """The ``(splits, extras)`` of a registered set, ``records_for(tfds_split)`` reading tfds."""
    source = _SOURCES[info.name]
    records = records_for(source.splits[split])
    return {split: records_to_arrays(records, source, int(opts["image_size"]))}, {}


def register_tfds_segmentation(info: DatasetInfo, source: SegmentationSource) -> None:
    """Adds a tfds segmentation set to the catalog (idempotent).

    ``info.options`` must include ``image_size`` and ``ignore_label``.
    """
    DATASETS.setdefault(info.name, info)
    LOCAL_READERS.setdefault(info.name, _no_local_copy)
    _SOURCES.setdefault(info.name, source)


def register() -> None:
    """Registers ``oxford_iiit_pet_seg``."""
    register_tfds_segmentation(OXFORD_PETS, PETS_SOURCE)


def is_registered(name: str) -> bool:
    """Whether ``name`` is a tfds segmentation set of this module."""
    return name in _SOURCES
