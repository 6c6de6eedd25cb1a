"""``digit_segmentation``: MNIST digits on a canvas with per-pixel labels, generated offline.

Each example places ``1..max_digits`` MNIST digits of its split on a ``canvas x canvas``
black canvas (64 by default), each under its own random similarity transform about
its centre: a scale in ``[min_scale, max_scale]``, a rotation up to ``max_rotation``
degrees, and a position anywhere that keeps the centre ``canvas // 8`` pixels inside
the border (digits may overlap and may be cut by the border). The warp is bilinear
(``cnn_jax.data.multimnist.affine_warp``). The image is the pixel-wise maximum of the
warped digits; the label map gives every pixel whose brightest digit reaches
``threshold`` (of 255) that digit's class plus one, and every other pixel the class 0,
background: 11 classes, ``0`` background and ``1 + d`` for the digit ``d``. Arrays:
``image`` uint8 ``(N, S, S, 1)``, ``label`` int32 ``(N, S, S)``, ``count`` int32
``(N,)`` (digits placed) and ``source`` int32 ``(N, max_digits)`` (their MNIST indices,
-1 where unused).

Every random number comes from ``numpy.random.default_rng(2 * seed + split)`` (split 0
train, 1 test), so a split is a function of the MNIST files and the options; train
examples use only MNIST's training digits and test examples only its test digits.
Registered in ``cnn_jax.data`` as the data set ``digit_segmentation`` (options
``canvas``, ``max_digits``, ``train_size``, ``test_size``, ``seed``, ``min_scale``,
``max_scale``, ``max_rotation``, ``threshold``) and cached like the other sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnn_jax.data._catalog import DATASETS, DatasetInfo
from cnn_jax.data._readers import LOCAL_READERS, MNIST_FILES, Splits
from cnn_jax.data.multimnist import affine_warp
from cnn_jax.ops._validate import is_int

__all__ = [
    "BACKGROUND",
    "DIGIT_SEGMENTATION",
    "NUM_SEGMENTATION_CLASSES",
    "check_label_map",
    "make_digit_segmentation",
]

#: The background class; digit ``d`` is class ``d + 1``.
BACKGROUND = 0
#: Background plus ten digits.
NUM_SEGMENTATION_CLASSES = 11
_SPLIT_SEED = {"train": 0, "test": 1}
_CHUNK = 512  # examples warped at a time (bounds the memory of the warp)


def _int(value: object, name: str, low: int) -> int:
    if not is_int(value) or value < low:
        raise ValueError(f"`{name}` (={value!r}) must be an int >= {low}")
    return int(value)


def _real(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"`{name}` (={value!r}) must be a number in [{low:g}, {high:g}]")
    return float(value)


def check_label_map(
    image: np.ndarray, label: np.ndarray, num_classes: int, ignore_label: int | None = None
) -> None:
    """Checks a segmentation pair: ``image`` ``(N, H, W, C)``, ``label`` ``(N, H, W)`` in range.

    Args:
      image: the images.
      label: the label maps.
      num_classes: labels must lie in ``[0, num_classes)``...
      ignore_label: ...or equal this value.

    Raises:
      ValueError: naming ``label`` for a shape that does not match ``image`` or a class
        out of range (with the offending value and its example).
    """
    image, label = np.asarray(image), np.asarray(label)
    if image.ndim != 4 or label.shape != image.shape[:3]:
        raise ValueError(
            f"`label` shape {label.shape} must be the images' (N, H, W) = {image.shape[:3]} "
            f"(images of shape {image.shape})"
        )
    if label.dtype.kind not in "iu":
        raise ValueError(f"`label` must hold integers, got dtype {label.dtype}")
    bad = (label < 0) | (label >= num_classes)
    if ignore_label is not None:
        bad &= label != ignore_label
    if bad.any():
        n = int(np.argwhere(bad)[0][0])
        value = int(label[bad][0])
        raise ValueError(
            f"`label` holds class {value} (example {n}) outside [0, {num_classes})"
            + (f" and not the ignore label {ignore_label}" if ignore_label is not None else "")
        )


def make_digit_segmentation(
    images: np.ndarray,
    labels: np.ndarray,
    num_examples: int,
    *,
    seed: int = 0,
    canvas: int = 64,
    max_digits: int = 3,
    min_scale: float = 0.8,
    max_scale: float = 1.4,
    max_rotation: float = 15.0,
    threshold: int = 96,
) -> dict[str, np.ndarray]:
    """Digits on a canvas with per-pixel labels (see the module docstring).

    Args:
      images: ``(M, 28, 28)`` or ``(M, 28, 28, 1)`` uint8 MNIST digits.
      labels: ``(M,)`` their classes 0-9.
      num_examples: examples to make.
      seed: the generator's seed.
      canvas: the side of the canvas (at least 28).
      max_digits: each example has 1 to this many digits.
      min_scale: smallest scale of a digit.
      max_scale: largest scale.
      max_rotation: largest rotation, in degrees (either way).
      threshold: a pixel belongs to a digit when the digit's warped intensity reaches it.

    Returns:
      ``image``, ``label``, ``count`` and ``source`` (see the module docstring).

    Raises:
      ValueError: for an argument out of range (naming it) or images and labels that
        do not match.
    """
    num_examples = _int(num_examples, "num_examples", 1)
    canvas = _int(canvas, "canvas", 28)
    max_digits = _int(max_digits, "max_digits", 1)
    min_scale = _real(min_scale, "min_scale", 0.1, 10.0)
    max_scale = _real(max_scale, "max_scale", min_scale, 10.0)
    max_rotation = _real(max_rotation, "max_rotation", 0.0, 180.0)
    threshold = _int(threshold, "threshold", 1)
    if threshold > 255:
        raise ValueError(f"`threshold` (={threshold!r}) must be at most 255")
    labels = np.asarray(labels).astype(np.int64)
    images = np.asarray(images)
    if images.shape[:1] != labels.shape or images.reshape(len(labels), -1).shape[1] != 784:
        raise ValueError(
            f"`images` (shape {images.shape}) must be (M, 28, 28[, 1]) for the M = "
            f"{labels.shape} `labels`"
        )
    images = images.reshape(-1, 28, 28)
    rng = np.random.default_rng(seed)
    n, k = num_examples, max_digits
    count = rng.integers(1, k + 1, n)
    source = rng.integers(0, len(labels), (n, k))
    scale = rng.uniform(min_scale, max_scale, (n, k))
    theta = np.deg2rad(rng.uniform(-max_rotation, max_rotation, (n, k)))
    margin = canvas // 8
    half = (canvas - 1) / 2
    centre = rng.uniform(margin - half, half - margin, (n, k, 2))
    used = np.arange(k)[None, :] < count[:, None]
    cos, sin = np.cos(theta), np.sin(theta)
    # Inverse maps (output -> digit): rotate by -theta, divide by the scale.
    inv = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    inv = inv / scale[..., None, None]
    offset = -np.einsum("nkij,nkj->nki", inv, centre)
    matrices = np.concatenate([inv, offset[..., None]], -1).reshape(n * k, 2, 3)
    flat_src = source.reshape(-1)
    warped = np.concatenate(
        [
            affine_warp(images[flat_src[i : i + _CHUNK]], matrices[i : i + _CHUNK], canvas)
            for i in range(0, n * k, _CHUNK)
        ]
    ).reshape(n, k, canvas, canvas)
    warped = np.where(used[:, :, None, None], warped, 0)
    image = warped.max(axis=1)
    top = warped.argmax(axis=1)
    digit = labels[source]  # (n, k)
    cls = np.take_along_axis(digit[:, :, None, None], top[:, None], axis=1)[:, 0] + 1
    label = np.where(image >= threshold, cls, BACKGROUND).astype(np.int32)
    return {
        "image": image[..., None].astype(np.uint8),
        "label": label,
        "count": count.astype(np.int32),
        "source": np.where(used, source, -1).astype(np.int32),
    }


def _local(root: Path, opts: dict) -> Splits:
    mnist = LOCAL_READERS["mnist"](root, {})[0]
    seed = _int(opts["seed"], "seed", 0)
    kwargs = {
        k: opts[k]
        for k in ("canvas", "max_digits", "min_scale", "max_scale", "max_rotation", "threshold")
    }
    splits = {}
    for split, arrays in mnist.items():
        size = _int(opts[f"{split}_size"], f"{split}_size", 1)
        splits[split] = make_digit_segmentation(
            arrays["image"], arrays["label"], size, seed=2 * seed + _SPLIT_SEED[split], **kwargs
        )
    return splits, {}


#: The data set's catalog entry.
DIGIT_SEGMENTATION = DatasetInfo(
    name="digit_segmentation",
    description="MNIST digits scaled/rotated on a 64x64 canvas, per-pixel labels (11 classes)",
    input_key="image",
    num_classes=NUM_SEGMENTATION_CLASSES,
    class_names=("background", *(str(d) for d in range(10))),
    split_sizes={"train": 10000, "test": 2000},
    files=(*MNIST_FILES["train"], *MNIST_FILES["test"]),
    how_to_get="the four gzipped IDX files of MNIST (the generator's only input)",
    tfds_name="",
    options={
        "train_size": 10000,
        "test_size": 2000,
        "seed": 0,
        "canvas": 64,
        "max_digits": 3,
        "min_scale": 0.8,
        "max_scale": 1.4,
        "max_rotation": 15.0,
        "threshold": 96,
    },
)


def register() -> None:
    """Adds ``digit_segmentation`` to ``cnn_jax.data.DATASETS`` and the readers (idempotent)."""
    DATASETS.setdefault(DIGIT_SEGMENTATION.name, DIGIT_SEGMENTATION)
    LOCAL_READERS.setdefault(DIGIT_SEGMENTATION.name, _local)
