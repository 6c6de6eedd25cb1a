"""CIFAR-10 for the airbench runs: uint8 NHWC arrays, from the offline JPEG copy.

The repository's offline copy is a tarball of JPEGs in the ImageFolder layout
(``{train,test}/<class>/NNNN.jpg``, JPEG quality about 75): its images are not the
original pixels, so accuracies on it run somewhat below those on the original
CIFAR-10 (both programs of a side-by-side run read the same arrays).

Where the tarball is found (``data_dir``):

* ``None``: ``cnn_jax.data.load_dataset('cifar10', ...)``'s default (``CNN_JAX_DATA_DIR``
  or ``../shared/data``), i.e. ``<data dir>/cifar10_jpeg/cifar10_jpeg.tar.gz``;
* a folder holding ``cifar10_jpeg/cifar10_jpeg.tar.gz`` (the cnn_jax layout) or
  ``cifar10_jpeg.tar.gz`` directly, or the path of the tarball itself (for a copy
  carried inside the repository, e.g. ``--data_dir=data/cifar10_jpeg``).

The tarball is read in memory (never unpacked) through
:func:`cnn_jax.data.iter_archive_files`, which rejects absolute paths, ``..``
components, links and special files; decoded arrays are cached as ``.npz`` by
``load_dataset`` (``~/.cache/cnn_jax`` or ``CNN_JAX_CACHE_DIR``). Decoding needs Pillow.

``load_dataset`` sorts the images by class; ``airbench94.py`` estimates its whitening
layer on the *first* 5,000 training images, which in the original files are in random
order. So the training set is permuted once, with a fixed seed
(:data:`TRAIN_ORDER_SEED`): its first images are a class-balanced sample, and every run
and both frameworks see the same arrays.
"""

from __future__ import annotations

import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["TARBALL", "TRAIN_ORDER_SEED", "find_tarball", "load_cifar10", "synthetic_cifar10"]

#: The tarball's file name.
TARBALL = "cifar10_jpeg.tar.gz"
#: Seed of the one fixed permutation of the training set.
TRAIN_ORDER_SEED = 0

_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_MEMBER = re.compile(r"^(train|test)/([a-z_]+)/([^/]+)\.(jpg|jpeg|png)$", re.IGNORECASE)

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def find_tarball(data_dir: str | os.PathLike) -> Path:
    """Finds the CIFAR-10 JPEG tarball in or at ``data_dir``.

    Args:
      data_dir: the tarball, a folder holding it, or a folder holding
        ``cifar10_jpeg/cifar10_jpeg.tar.gz``.

    Returns:
      The tarball's path.

    Raises:
      FileNotFoundError: if none of those exists.
    """
    root = Path(data_dir).expanduser()
    for candidate in (root, root / TARBALL, root / "cifar10_jpeg" / TARBALL):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"`data_dir` (={os.fspath(data_dir)!r}) holds no CIFAR-10 JPEG tarball: looked for "
        f"{os.fspath(root / TARBALL)!r} and {os.fspath(root / 'cifar10_jpeg' / TARBALL)!r}"
    )


def _read_tarball(path: Path) -> Splits:
    """Decodes the tarball (safe in-memory reading, Pillow, a few threads)."""
    from PIL import Image

    from cnn_jax.data.archive import iter_archive_files

    entries: dict[str, list[tuple[int, str, bytes]]] = {"train": [], "test": []}
    for name, data in iter_archive_files(path):
        m = _MEMBER.match(name)
        if m is None:
            continue
        cls = m.group(2).lower()
        if cls not in _CLASSES:
            raise ValueError(f"{os.fspath(path)!r}: member {name!r} has an unknown class {cls!r}")
        entries[m.group(1).lower()].append((_CLASSES.index(cls), m.group(3), data))
    out = {}
    for split, items in entries.items():
        items.sort(key=lambda t: (t[0], t[1]))
        images = np.empty((len(items), 32, 32, 3), np.uint8)

        def decode(chunk: range, items=items, images=images) -> None:
            for i in chunk:
                with Image.open(io.BytesIO(items[i][2])) as im:
                    images[i] = np.asarray(im.convert("RGB"))

        chunks = [range(s, min(s + 2048, len(items))) for s in range(0, len(items), 2048)]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(decode, chunks))
        out[split] = (images, np.array([t[0] for t in items], np.int32))
    return out


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Splits:
    """Loads CIFAR-10 as ``{'train': (images, labels), 'test': (images, labels)}``.

    Args:
      data_dir: see the module docstring; ``None`` for cnn_jax's default data directory.

    Returns:
      uint8 images ``(N, 32, 32, 3)`` and int32 labels; 50,000 training images (in the
      fixed order of :data:`TRAIN_ORDER_SEED`) and 10,000 test images.

    Raises:
      FileNotFoundError: if the tarball is not found.
    """
    if data_dir is None:
        from cnn_jax.data import load_dataset

        splits = {}
        for split in ("train", "test"):
            arrays = load_dataset("cifar10", split)
            splits[split] = (arrays["image"], arrays["label"].astype(np.int32))
    else:
        tarball = find_tarball(data_dir)
        if tarball.parent.name == "cifar10_jpeg" and tarball.name == TARBALL:
            from cnn_jax.data import load_dataset  # the cnn_jax layout: cached decoding

            splits = {}
            for split in ("train", "test"):
                arrays = load_dataset("cifar10", split, data_dir=tarball.parent.parent)
                splits[split] = (arrays["image"], arrays["label"].astype(np.int32))
        else:
            splits = _read_tarball(tarball)
    images, labels = splits["train"]
    order = np.random.default_rng(TRAIN_ORDER_SEED).permutation(len(images))
    splits["train"] = (np.ascontiguousarray(images[order]), np.ascontiguousarray(labels[order]))
    return splits


def synthetic_cifar10(num_train: int, num_test: int, seed: int = 0) -> Splits:
    """Random CIFAR-shaped data with a learnable signal (smoke tests, no files needed).

    Every class has its own mean color and a per-class pattern; the images are noisy
    versions of it, so a network can fit them quickly.

    Args:
      num_train: training images.
      num_test: test images.
      seed: numpy seed.

    Returns:
      The same structure as :func:`load_cifar10`.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(40, 215, size=(10, 32, 32, 3))

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, size=n).astype(np.int32)
        noise = rng.normal(0, 50, size=(n, 32, 32, 3))
        images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels

    return {"train": make(num_train), "test": make(num_test)}
