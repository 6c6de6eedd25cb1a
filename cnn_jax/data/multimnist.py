"""MultiMNIST and an affNIST-like test set, generated deterministically from MNIST.

* ``multimnist`` (Sabour et al. 2017, section 6): each example overlays two MNIST
  digits of *different* classes from the same split, each shifted by up to
  ``max_shift`` (4) pixels in each direction on a 36x36 canvas (the 28x28 digit padded
  by 4), combined by the pixel-wise maximum. ``label`` is multi-hot ``(N, 10)`` int32
  (two ones); ``digits`` ``(N, 2)`` the two classes; ``source`` ``(N, 2)`` the MNIST
  indices and ``shift`` ``(N, 2, 2)`` the (dy, dx) of each digit, from which
  :func:`multimnist_components` redraws each digit alone (e.g. to compare with
  per-digit reconstructions). The first digit of example ``n`` is MNIST example
  ``perm[n % len]`` of a seeded permutation, so every digit is used once per pass;
  the paper pairs each digit with 1,000 others (60M training images), ``train_size``
  sets how many are made here.
* ``affnist_like``: MNIST digits on a ``canvas`` x ``canvas`` canvas (40). ``train``:
  each training digit translated by up to ``max_shift`` (6) pixels; ``test``: the first
  ``test_size`` (10,000) test digits, each under a small random affine map about the
  centre (rotation up to ``max_rotation`` degrees, scale in
  ``[1 - max_scale, 1 + max_scale]`` per axis, shear up to ``max_shear``, translation
  up to ``max_shift`` pixels), bilinear. In the spirit of affNIST (which uses larger
  ranges); the train split is shifted MNIST only, as in the paper's robustness
  experiment. With ``canvas=28`` and every range 0, the splits are MNIST's own digits,
  unchanged (the identity warp samples the pixels).

Both draw every random number from ``numpy.random.default_rng(seed)`` (one stream per
split), so a split is a function of the MNIST files and the options. They are read by
``cnn_jax.data.load_dataset`` (``source='local'``; the MNIST files are the only input)
and cached like the other data sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnn_jax.data._catalog import DATASETS, DatasetInfo
from cnn_jax.data._readers import LOCAL_READERS, MNIST_FILES, Splits
from cnn_jax.ops._validate import is_int

__all__ = [
    "AFFNIST_LIKE",
    "MULTIMNIST",
    "affine_warp",
    "make_affnist_like",
    "make_multimnist",
    "multimnist_components",
    "shift_onto_canvas",
]

_SPLIT_SEED = {"train": 0, "test": 1}


def _check_int(value: object, name: str, low: int) -> int:
    if not is_int(value) or value < low:
        raise ValueError(f"`{name}` (={value!r}) must be an int >= {low}")
    return int(value)


def shift_onto_canvas(images: np.ndarray, shifts: np.ndarray, canvas: int) -> np.ndarray:
    """Places ``(N, h, w)`` images centred on ``canvas x canvas``, moved by ``shifts``.

    Args:
      images: ``(N, h, w)`` uint8.
      shifts: ``(N, 2)`` integer (dy, dx); the digit must stay on the canvas.
      canvas: the side of the output.

    Returns:
      ``(N, canvas, canvas)`` of the images' dtype.

    Raises:
      ValueError: if a shift moves a digit off the canvas.
    """
    n, h, w = images.shape
    top, left = (canvas - h) // 2, (canvas - w) // 2
    ys, xs = top + shifts[:, 0], left + shifts[:, 1]
    if np.any(ys < 0) or np.any(xs < 0) or np.any(ys + h > canvas) or np.any(xs + w > canvas):
        raise ValueError(f"`shifts` move a {h}x{w} image off the {canvas}x{canvas} canvas")
    out = np.zeros((n, canvas, canvas), images.dtype)
    rows = ys[:, None] + np.arange(h)[None, :]  # (N, h)
    cols = xs[:, None] + np.arange(w)[None, :]  # (N, w)
    out[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = images
    return out


def make_multimnist(
    images: np.ndarray,
    labels: np.ndarray,
    num_examples: int,
    *,
    seed: int = 0,
    max_shift: int = 4,
) -> dict[str, np.ndarray]:
    """Pairs of overlapping digits of different classes (see the module docstring).

    Args:
      images: ``(M, 28, 28)`` or ``(M, 28, 28, 1)`` uint8 MNIST digits.
      labels: ``(M,)`` their classes.
      num_examples: examples to make.
      seed: the generator's seed.
      max_shift: each digit moves by up to this many pixels in each direction.

    Returns:
      ``image`` ``(N, S, S, 1)`` uint8 with ``S = 28 + 2 * max_shift``, ``label``
      ``(N, 10)`` multi-hot int32, ``digits``, ``source`` and ``shift``.
    """
    num_examples = _check_int(num_examples, "num_examples", 1)
    max_shift = _check_int(max_shift, "max_shift", 0)
    images = np.asarray(images).reshape(len(labels), 28, 28)
    labels = np.asarray(labels).astype(np.int64)
    rng = np.random.default_rng(seed)
    m = len(labels)
    first = rng.permutation(m)[np.arange(num_examples) % m]
    second = rng.integers(0, m, num_examples)
    same = labels[second] == labels[first]
    while np.any(same):  # redraw partners of the same class
        second[same] = rng.integers(0, m, int(same.sum()))
        same = labels[second] == labels[first]
    shift = rng.integers(-max_shift, max_shift + 1, size=(num_examples, 2, 2))
    source = np.stack([first, second], axis=1)
    canvas = 28 + 2 * max_shift
    image = multimnist_components(images, source, shift, canvas).max(axis=1)
    label = np.zeros((num_examples, 10), np.int32)
    label[np.arange(num_examples), labels[first]] = 1
    label[np.arange(num_examples), labels[second]] = 1
    return {
        "image": image[..., None],
        "label": label,
        "digits": labels[source].astype(np.int32),
        "source": source.astype(np.int32),
        "shift": shift.astype(np.int32),
    }


def multimnist_components(
    images: np.ndarray, source: np.ndarray, shift: np.ndarray, canvas: int = 36
) -> np.ndarray:
    """Each digit of MultiMNIST examples alone: ``(N, 2, canvas, canvas)`` uint8.

    Args:
      images: the MNIST digits the examples were made from, ``(M, 28, 28[, 1])``.
      source: ``(N, 2)`` indices into ``images``.
      shift: ``(N, 2, 2)`` the (dy, dx) of each digit.
      canvas: the examples' side.
    """
    images = np.asarray(images).reshape(-1, 28, 28)
    n = len(source)
    out = shift_onto_canvas(
        images[np.asarray(source).reshape(-1)], np.asarray(shift).reshape(-1, 2), canvas
    )
    return out.reshape(n, 2, canvas, canvas)


def affine_warp(images: np.ndarray, matrices: np.ndarray, canvas: int) -> np.ndarray:
    """Bilinear warp of ``(N, h, w)`` images, centred, onto ``canvas x canvas``.

    Args:
      images: ``(N, h, w)`` uint8.
      matrices: ``(N, 2, 3)`` maps from output (y, x, 1), relative to the canvas centre,
        to input (y, x) relative to the image centre (the inverse transform).
      canvas: the side of the output.

    Returns:
      ``(N, canvas, canvas)`` uint8; points outside the image read 0.
    """
    n, h, w = images.shape
    c = (canvas - 1) / 2
    yy, xx = np.meshgrid(np.arange(canvas) - c, np.arange(canvas) - c, indexing="ij")
    grid = np.stack([yy.ravel(), xx.ravel(), np.ones(canvas * canvas)])  # (3, P)
    src = np.einsum("nij,jp->nip", matrices, grid)  # (N, 2, P)
    sy, sx = src[:, 0] + (h - 1) / 2, src[:, 1] + (w - 1) / 2
    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    fy, fx = sy - y0, sx - x0
    padded = np.pad(images.astype(np.float32), ((0, 0), (1, 1), (1, 1)))
    out = np.zeros(sy.shape, np.float32)
    idx = np.arange(n)[:, None]
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi = np.clip(y0 + dy + 1, 0, h + 1)
            xi = np.clip(x0 + dx + 1, 0, w + 1)
            inside = (y0 + dy >= -1) & (y0 + dy <= h) & (x0 + dx >= -1) & (x0 + dx <= w)
            out += np.where(inside, padded[idx, yi, xi], 0.0) * wy * wx
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(n, canvas, canvas)


def make_affnist_like(
    images: np.ndarray,
    *,
    seed: int = 0,
    canvas: int = 40,
    max_rotation: float = 20.0,
    max_scale: float = 0.2,
    max_shear: float = 0.2,
    max_shift: int = 6,
    affine: bool = True,
) -> np.ndarray:
    """Digits under small random affine maps (or shifts only) on a larger canvas.

    Args:
      images: ``(N, 28, 28[, 1])`` uint8.
      seed: the generator's seed.
      canvas: the output side.
      max_rotation: degrees, drawn uniformly in ``[-max_rotation, max_rotation]``.
      max_scale: per-axis scale drawn in ``[1 - max_scale, 1 + max_scale]``.
      max_shear: shear factor drawn in ``[-max_shear, max_shear]``.
      max_shift: integer translation in pixels, per axis.
      affine: False: translations only (the training split).

    Returns:
      ``(N, canvas, canvas, 1)`` uint8.
    """
    images = np.asarray(images).reshape(-1, 28, 28)
    n = len(images)
    rng = np.random.default_rng(seed)
    shift = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    if not affine:
        return shift_onto_canvas(images, shift, canvas)[..., None]
    theta = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))
    scale = rng.uniform(1 - max_scale, 1 + max_scale, size=(n, 2))
    shear = rng.uniform(-max_shear, max_shear, n)
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)  # (N, 2, 2)
    sh = np.zeros((n, 2, 2))
    sh[:, 0, 0] = sh[:, 1, 1] = 1.0
    sh[:, 1, 0] = shear
    forward = rot @ sh @ (scale[:, :, None] * np.eye(2))
    inverse = np.linalg.inv(forward)
    offset = -np.einsum("nij,nj->ni", inverse, shift.astype(np.float64))
    matrices = np.concatenate([inverse, offset[:, :, None]], axis=2)
    return affine_warp(images, matrices, canvas)[..., None]


def _mnist(root: Path) -> dict[str, dict[str, np.ndarray]]:
    return LOCAL_READERS["mnist"](root, {})[0]


def _multimnist_local(root: Path, opts: dict) -> Splits:
    sizes = {s: _check_int(opts[f"{s}_size"], f"{s}_size", 1) for s in ("train", "test")}
    seed = _check_int(opts["seed"], "seed", 0)
    shift = _check_int(opts["max_shift"], "max_shift", 0)
    splits = {}
    for split, mnist in _mnist(root).items():
        splits[split] = make_multimnist(
            mnist["image"],
            mnist["label"],
            sizes[split],
            seed=seed * 2 + _SPLIT_SEED[split],
            max_shift=shift,
        )
    return splits, {}


def _affnist_local(root: Path, opts: dict) -> Splits:
    seed = _check_int(opts["seed"], "seed", 0)
    shift = _check_int(opts["max_shift"], "max_shift", 0)
    canvas = _check_int(opts["canvas"], "canvas", 28)
    test_size = _check_int(opts["test_size"], "test_size", 1)
    for key in ("max_rotation", "max_scale", "max_shear"):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"`{key}` (={value!r}) must be a non-negative number")
    if opts["max_scale"] >= 1:
        raise ValueError(f"`max_scale` (={opts['max_scale']!r}) must be below 1")
    sources = _mnist(root)
    available = len(sources["test"]["label"])
    if test_size > available:
        raise ValueError(
            f"`test_size` (={test_size}) must be at most the {available} MNIST test digits "
            "the set is made from"
        )
    splits = {}
    for split, mnist in sources.items():
        if split == "test":
            mnist = {k: v[:test_size] for k, v in mnist.items()}
        image = make_affnist_like(
            mnist["image"],
            seed=seed * 2 + _SPLIT_SEED[split],
            canvas=canvas,
            max_rotation=float(opts["max_rotation"]),
            max_scale=float(opts["max_scale"]),
            max_shear=float(opts["max_shear"]),
            max_shift=shift,
            affine=split == "test",
        )
        splits[split] = {"image": image, "label": mnist["label"]}
    return splits, {}


_MNIST_ALL = (*MNIST_FILES["train"], *MNIST_FILES["test"])
_HOW = "the four gzipped IDX files of MNIST (the generator's only input)"

#: MultiMNIST (``load_dataset('multimnist', split, train_size=..., ...)``).
MULTIMNIST = DatasetInfo(
    name="multimnist",
    description="MultiMNIST: two overlapping MNIST digits on 36x36, multi-hot labels",
    input_key="image",
    num_classes=10,
    class_names=tuple(str(d) for d in range(10)),
    split_sizes={"train": 60000, "test": 10000},
    files=_MNIST_ALL,
    how_to_get=_HOW,
    tfds_name="",
    options={"train_size": 60000, "test_size": 10000, "seed": 0, "max_shift": 4},
)

#: The affNIST-like set: shifted MNIST for training, affine-transformed test digits.
AFFNIST_LIKE = DatasetInfo(
    name="affnist_like",
    description="MNIST on 40x40: shifted (train), small random affine maps (test)",
    input_key="image",
    num_classes=10,
    class_names=tuple(str(d) for d in range(10)),
    split_sizes={"train": 60000, "test": 10000},
    files=_MNIST_ALL,
    how_to_get=_HOW,
    tfds_name="",
    options={
        "seed": 0,
        "canvas": 40,
        "test_size": 10000,
        "max_shift": 6,
        "max_rotation": 20.0,
        "max_scale": 0.2,
        "max_shear": 0.2,
    },
)


def register() -> None:
    """Adds the two data sets to ``cnn_jax.data.DATASETS`` and the local readers (idempotent)."""
    for info, reader in ((MULTIMNIST, _multimnist_local), (AFFNIST_LIKE, _affnist_local)):
        DATASETS.setdefault(info.name, info)
        LOCAL_READERS.setdefault(info.name, reader)
