"""ImageNet (ILSVRC-2012) read lazily, and a synthetic image set for quick runs.

ImageNet does not fit in memory, so its ``image`` column is a ``LazyImages``: the
batch iterator asks it for the examples of a batch, which are decoded (PIL) and
augmented on host threads.

* Training: Inception-style random-resized crop (area 8-100% of the image, aspect
  ratio 3/4-4/3; Szegedy et al. 2015) to ``image_size`` and a random horizontal flip,
  drawn from ``(seed, epoch, index)`` so that a resumed run sees the same crops.
* Evaluation: resize the shorter side to ``resize_size`` (256 for 224) and take the
  central ``image_size`` square.

Sources: ``source='local'`` reads the ImageFolder layout that the ILSVRC-2012
archives are usually unpacked to, ``<data_dir>/imagenet2012/{train,val}/<wnid>/*.JPEG``
(labels are the sorted wnids, as tfds and torchvision number them);
``source='tfds'`` reads a prepared ``imagenet2012`` (``tfds.data_source``, which needs
the ``array_record`` format; preparing it needs the manual download of the archives,
see the tfds catalogue).

``synthetic``: class-dependent colour patterns plus noise, any size; learnable in a few
steps, for ``runlocal`` configs and tests.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cnn_jax.data.paths import DatasetNotFoundError
from cnn_jax.ops._validate import is_int

__all__ = ["LazyImages", "center_crop", "imagenet_arrays", "random_resized_crop", "synthetic"]

IMAGENET_TRAIN_SIZE = 1_281_167
IMAGENET_VAL_SIZE = 50_000
_EXTENSIONS = (".jpeg", ".jpg", ".png")


def _pil() -> Any:
    from PIL import Image

    return Image


def random_resized_crop(
    image: Any,
    size: int,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Any:
    """A random crop of ``scale`` of the area and ``ratio`` aspect, resized to ``size``.

    Ten tries as in torchvision, then the central crop of the clamped aspect ratio.

    Args:
      image: a PIL image.
      size: the output side.
      rng: the generator of this example.
      scale: the area fraction range.
      ratio: the aspect ratio range (width / height).

    Returns:
      The ``size x size`` PIL image.
    """
    width, height = image.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            break
    else:
        aspect = width / height
        if aspect < ratio[0]:
            w, h = width, round(width / ratio[0])
        elif aspect > ratio[1]:
            w, h = round(height * ratio[1]), height
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
    return image.resize((size, size), _pil().BILINEAR, box=(left, top, left + w, top + h))


def center_crop(image: Any, size: int, resize_size: int) -> Any:
    """Resizes the shorter side to ``resize_size`` and takes the central square ``size``."""
    width, height = image.size
    s = resize_size / min(width, height)
    w, h = max(size, round(width * s)), max(size, round(height * s))
    image = image.resize((w, h), _pil().BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


class LazyImages:
    """An image column decoded on demand: ``take(indices, epoch)`` -> ``(B, S, S, 3)`` uint8.

    Attributes:
      training: random-resized crops and flips (``True``) or the central crop.
      image_size: the output side.
    """

    def __init__(
        self,
        read: Any,
        count: int,
        *,
        training: bool,
        image_size: int = 224,
        resize_size: int | None = None,
        seed: int = 0,
        num_workers: int = 8,
    ):
        """Builds the column.

        Args:
          read: ``read(i) -> bytes`` of encoded image ``i``.
          count: the number of images.
          training: see the class docstring.
          image_size: the output side.
          resize_size: the shorter side before the central crop (default
            ``image_size * 256 / 224``).
          seed: the augmentation seed.
          num_workers: decoding threads.
        """
        self._read = read
        self._count = int(count)
        self.training = bool(training)
        self.image_size = int(image_size)
        self._resize = int(resize_size or round(image_size * 256 / 224))
        self._seed = int(seed)
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(num_workers)))

    def __len__(self) -> int:
        return self._count

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the whole column."""
        return (self._count, self.image_size, self.image_size, 3)

    def _one(self, index: int, epoch: int) -> np.ndarray:
        image = _pil().open(io.BytesIO(self._read(index))).convert("RGB")
        if self.training:
            rng = np.random.default_rng([self._seed, epoch, index])
            image = random_resized_crop(image, self.image_size, rng)
            if rng.random() < 0.5:
                image = image.transpose(_pil().FLIP_LEFT_RIGHT)
        else:
            image = center_crop(image, self.image_size, self._resize)
        return np.asarray(image, np.uint8)

    def take(self, indices: Sequence[int], epoch: int) -> np.ndarray:
        """The decoded, augmented images at ``indices`` (crops drawn for ``epoch``)."""
        out = list(self._pool.map(lambda i: self._one(int(i), epoch), indices))
        if not out:
            return np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return np.stack(out)


def _image_folder(root: Path) -> tuple[list[Path], np.ndarray]:
    if not root.is_dir():
        raise FileNotFoundError(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in _EXTENSIONS and f.is_file() and not f.is_symlink():
                files.append(f)
                labels.append(label)
    return files, np.asarray(labels, np.int32)


def imagenet_arrays(
    split: str,
    root: Path,
    *,
    source: str,
    tfds_data_dir: str | None,
    image_size: int,
    resize_size: int | None,
    seed: int,
    num_workers: int,
) -> dict[str, Any]:
    """ImageNet's ``image`` (lazy) and ``label`` columns for ``split`` (``'test'`` = val).

    Args:
      split: ``'train'`` or ``'test'`` (the 50,000 validation images).
      root: the data directory (``source='local'``).
      source: ``'local'`` or ``'tfds'``.
      tfds_data_dir: tfds' data directory.
      image_size: the output side.
      resize_size: see ``LazyImages``.
      seed: the augmentation seed.
      num_workers: decoding threads.

    Returns:
      ``{'image': LazyImages, 'label': int32 array}``.

    Raises:
      DatasetNotFoundError: when the data is not there, saying where it must be.
    """
    training = split == "train"
    if source == "local":
        folder = root / "imagenet2012" / ("train" if training else "val")
        try:
            files, labels = _image_folder(folder)
        except FileNotFoundError:
            files, labels = [], np.zeros(0, np.int32)
        if not files:
            raise DatasetNotFoundError(
                f"ImageNet not found: {os.fspath(folder)!r} must hold <wnid>/*.JPEG folders "
                "(the ILSVRC-2012 train/val archives unpacked, validation images sorted into "
                "class folders), or use source='tfds' with a prepared 'imagenet2012'"
            )

        def read(i: int) -> bytes:
            return files[i].read_bytes()

        count = len(files)
    else:
        import tensorflow_datasets as tfds

        try:
            ds = tfds.data_source(
                "imagenet2012",
                split="train" if training else "validation",
                data_dir=tfds_data_dir,
                decoders={"image": tfds.decode.SkipDecoding()},
            )
        except Exception as e:  # tfds raises several types for an unprepared set
            raise DatasetNotFoundError(
                "tfds 'imagenet2012' is not prepared in the array_record format: download "
                "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar to tfds' manual_dir "
                "and run tfds.builder('imagenet2012', file_format='array_record')"
                f".download_and_prepare() ({e})"
            ) from e
        labels = np.asarray([int(ds[i]["label"]) for i in range(len(ds))], np.int32)

        def read(i: int) -> bytes:
            return bytes(ds[i]["image"])

        count = len(ds)
    image = LazyImages(
        read,
        count,
        training=training,
        image_size=image_size,
        resize_size=resize_size,
        seed=seed,
        num_workers=num_workers,
    )
    return {"image": image, "label": labels}


def synthetic(
    split: str,
    *,
    image_size: int = 32,
    channels: int = 3,
    num_classes: int = 10,
    train_size: int = 512,
    test_size: int = 128,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A learnable synthetic image set: a colour pattern per class plus noise.

    Each class owns a random 4x4 pattern upsampled to the image size; an example is its
    class' pattern shifted by up to an eighth of the image and with Gaussian noise
    (sd 40 grey levels). Train and test draw different examples of the same patterns.

    Args:
      split: ``'train'`` or ``'test'``.
      image_size: the side.
      channels: the channels.
      num_classes: the classes.
      train_size: training examples.
      test_size: test examples.
      seed: the patterns' and examples' seed.

    Returns:
      ``{'image': uint8 (N, S, S, C), 'label': int32 (N,)}``.

    Raises:
      ValueError: for non-positive sizes.
    """
    for name, value in (
        ("image_size", image_size),
        ("channels", channels),
        ("num_classes", num_classes),
        ("train_size", train_size),
        ("test_size", test_size),
    ):
        if not is_int(value) or value < 1:
            raise ValueError(f"`{name}` (={value!r}) must be a positive int")
    patterns = np.random.default_rng([seed, 0]).uniform(40, 215, (num_classes, 4, 4, channels))
    reps = math.ceil(image_size / 4)
    patterns = np.repeat(np.repeat(patterns, reps, 1), reps, 2)[:, :image_size, :image_size]
    n = train_size if split == "train" else test_size
    rng = np.random.default_rng([seed, 1 if split == "train" else 2])
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    shift = max(1, image_size // 8)
    dy, dx = rng.integers(-shift, shift + 1, (2, n))
    images = np.empty((n, image_size, image_size, channels), np.uint8)
    for i in range(n):
        pattern = np.roll(patterns[labels[i]], (dy[i], dx[i]), (0, 1))
        noisy = pattern + rng.normal(0, 40, pattern.shape)
        images[i] = np.clip(noisy, 0, 255).astype(np.uint8)
    return {"image": images, "label": labels}
