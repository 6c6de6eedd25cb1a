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
  digit are ``test`` (300 locally), the rest ``train`` (2,700 locally).
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
options and the source files' sizes and modification times.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import tempfile
import wave
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cnn_jax.data import text
from cnn_jax.data.archive import iter_archive_files
from cnn_jax.data.imagenet import imagenet_arrays, synthetic
from cnn_jax.data.paths import DatasetNotFoundError, resolve_cache_dir, resolve_data_dir
from cnn_jax.ops._validate import is_int

__all__ = [
    "DATASETS",
    "SOURCES",
    "DatasetInfo",
    "dataset_names",
    "get_dataset_info",
    "load_dataset",
    "load_vocabulary",
]

#: Bumped whenever the cached arrays change meaning.
_CACHE_FORMAT = 1

#: Values of ``source``.
SOURCES = ("local", "tfds")

Arrays = dict[str, np.ndarray]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


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


_MNIST_FILES = {
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}
_CIFAR_FILE = "cifar10_jpeg/cifar10_jpeg.tar.gz"
_FSDD_FILE = "fsdd/fsdd_recordings.tar.gz"
_MR_FILES = ("rt_polarity/rt-polarity.neg", "rt_polarity/rt-polarity.pos")

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 28x28x1",
        input_key="image",
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        split_sizes={"train": 60000, "test": 10000},
        files=(*_MNIST_FILES["train"], *_MNIST_FILES["test"]),
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
        files=(_CIFAR_FILE,),
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
        files=(_FSDD_FILE,),
        how_to_get=(
            "a .tar.gz of the recordings/ folder of "
            "https://github.com/Jakobovski/free-spoken-digit-dataset "
            "(recordings/{digit}_{speaker}_{index}.wav)"
        ),
        tfds_name="spoken_digit",
        options={"audio_length": 8000},
    ),
    "mr": DatasetInfo(
        name="mr",
        description="Movie Review sentence polarity (Pang & Lee 2005), Kim (2014)'s MR",
        input_key="tokens",
        num_classes=2,
        class_names=("negative", "positive"),
        split_sizes={"train": 9595, "test": 1067},
        files=_MR_FILES,
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

MR_NUM_FOLDS = 10


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


def _check_options(info: DatasetInfo, options: Mapping[str, Any]) -> dict[str, Any]:
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


def _check_split(info: DatasetInfo, split: str) -> str:
    if not isinstance(split, str) or split not in info.split_sizes:
        raise ValueError(
            f"`split` (={split!r}) must be one of {', '.join(map(repr, info.splits))} "
            f"for data set {info.name!r}"
        )
    return split


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"`source` (={source!r}) must be one of {', '.join(map(repr, SOURCES))}")
    return source


def _missing_error(info: DatasetInfo, data_dir: Path, origin: str, missing: list[str]):
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


# --------------------------------------------------------------------------- local readers


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    header = np.frombuffer(raw[: 4 + 4 * ndim], ">u4")
    if header[0] != magic:
        raise ValueError(
            f"{os.fspath(path)!r} is not an IDX file of {ndim} dimension(s) of uint8 "
            f"(magic number {int(header[0]):#010x}, expected {magic:#010x})"
        )
    shape = tuple(int(s) for s in header[1:])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{os.fspath(path)!r}: header says shape {shape} but holds {data.size} values"
        )
    return data.reshape(shape)


def _mnist_local(data_dir: Path, opts: dict) -> tuple[dict[str, Arrays], Arrays]:
    splits = {}
    for split, (img_file, lab_file) in _MNIST_FILES.items():
        images = _read_idx(data_dir / img_file, 0x00000803, 3)
        labels = _read_idx(data_dir / lab_file, 0x00000801, 1)
        if len(images) != len(labels):
            raise ValueError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
        splits[split] = {
            "image": np.ascontiguousarray(images[..., None]),
            "label": labels.astype(np.int32),
        }
    return splits, {}


def _import_pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - pillow is a dependency
        raise ImportError("decoding the CIFAR-10 JPEGs needs Pillow: `pip install pillow`") from e
    return Image


_CIFAR_MEMBER = re.compile(r"^(train|test)/([a-z_]+)/([^/]+)\.(jpg|jpeg|png)$", re.IGNORECASE)


def _cifar_local(data_dir: Path, opts: dict) -> tuple[dict[str, Arrays], Arrays]:
    Image = _import_pil()
    path = data_dir / _CIFAR_FILE
    entries: dict[str, list[tuple[int, str, bytes]]] = {"train": [], "test": []}
    for name, data in iter_archive_files(path):
        m = _CIFAR_MEMBER.match(name)
        if m is None:
            continue  # README and the like
        split, cls, stem = m.group(1).lower(), m.group(2).lower(), m.group(3)
        if cls not in CIFAR10_CLASSES:
            raise ValueError(f"{os.fspath(path)!r}: member {name!r} has an unknown class {cls!r}")
        entries[split].append((CIFAR10_CLASSES.index(cls), stem, data))
    splits = {}
    for split, items in entries.items():
        items.sort(key=lambda t: (t[0], t[1]))
        images = np.empty((len(items), 32, 32, 3), np.uint8)

        def decode(chunk: range, items=items, images=images, split=split) -> None:
            for i in chunk:
                _, stem, data = items[i]
                with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as im:
                    arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
                if arr.shape != (32, 32, 3):
                    raise ValueError(
                        f"{os.fspath(path)!r}: {split} image {stem!r} has shape {arr.shape}, "
                        "expected (32, 32, 3)"
                    )
                images[i] = arr

        # Pillow releases the GIL while decoding: a few threads help.
        chunks = [range(s, min(s + 2048, len(items))) for s in range(0, len(items), 2048)]
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            list(pool.map(decode, chunks))
        labels = np.array([t[0] for t in items], np.int32)
        splits[split] = {"image": images, "label": labels}
    return splits, {}


_FSDD_MEMBER = re.compile(r"^(?:.*/)?(\d)_([A-Za-z]+)_(\d+)\.wav$")


def _decode_wav(data: bytes, where: str) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 8000:
            raise ValueError(
                f"{where}: expected 8 kHz mono 16-bit PCM, got {w.getnchannels()} channel(s), "
                f"{8 * w.getsampwidth()} bits, {w.getframerate()} Hz"
            )
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def _fsdd_finalize(
    records: list[tuple[int, str, int, np.ndarray]], opts: dict
) -> tuple[dict[str, Arrays], Arrays]:
    """``records``: (digit, speaker, index, int waveform) -> the train/test arrays."""
    length = opts["audio_length"]
    records = sorted(records, key=lambda r: (r[1], r[0], r[2]))
    speakers = sorted({r[1] for r in records})
    splits = {}
    for split in ("train", "test"):
        sel = [r for r in records if (r[2] < 5) == (split == "test")]
        audio = np.zeros((len(sel), length, 1), np.float32)
        lengths = np.zeros((len(sel),), np.int32)
        for i, (_, _, _, wav) in enumerate(sel):
            n = min(len(wav), length)
            audio[i, :n, 0] = wav[:n].astype(np.float32) / 32768.0
            lengths[i] = n
        splits[split] = {
            "audio": audio,
            "length": lengths,
            "label": np.array([r[0] for r in sel], np.int32),
            "speaker": np.array([speakers.index(r[1]) for r in sel], np.int32),
        }
    return splits, {"speakers": np.array(speakers)}


def _fsdd_local(data_dir: Path, opts: dict) -> tuple[dict[str, Arrays], Arrays]:
    path = data_dir / _FSDD_FILE
    records = []
    for name, data in iter_archive_files(path):
        m = _FSDD_MEMBER.match(name)
        if m is None:
            continue
        wav = _decode_wav(data, f"{os.fspath(path)!r}: {name!r}")
        records.append((int(m.group(1)), m.group(2), int(m.group(3)), wav))
    return _fsdd_finalize(records, opts)


def _mr_finalize(
    sentences: list[str], labels: np.ndarray, opts: dict
) -> tuple[dict[str, Arrays], Arrays]:
    """Tokenizes, splits into folds, builds the vocabulary on train, pads."""
    tokens = [text.tokenize(s) for s in sentences]
    perm = np.random.default_rng(opts["seed"]).permutation(len(tokens))
    folds = np.array_split(perm, MR_NUM_FOLDS)
    test_idx = np.sort(folds[opts["fold"]])
    train_idx = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != opts["fold"]]))
    train_tokens = [tokens[i] for i in train_idx]
    vocab = text.build_vocabulary(train_tokens, opts["min_count"])
    max_length = opts["max_length"] or max(len(t) for t in train_tokens)
    splits = {}
    for split, idx in (("train", train_idx), ("test", test_idx)):
        ids, lengths = text.encode([tokens[i] for i in idx], vocab, max_length)
        splits[split] = {
            "tokens": ids,
            "length": lengths,
            "label": labels[idx].astype(np.int32),
            "index": idx.astype(np.int32),
        }
    return splits, {"vocabulary": np.array(vocab)}


def _mr_local(data_dir: Path, opts: dict) -> tuple[dict[str, Arrays], Arrays]:
    sentences, labels = [], []
    for label, rel in enumerate(_MR_FILES):  # neg = 0, pos = 1
        with open(data_dir / rel, encoding="latin-1") as f:
            lines = [line.strip() for line in f]
        lines = [s for s in lines if s]
        sentences += lines
        labels += [label] * len(lines)
    return _mr_finalize(sentences, np.array(labels, np.int32), opts)


_LOCAL_READERS: dict[str, Callable[[Path, dict], tuple[dict[str, Arrays], Arrays]]] = {
    "mnist": _mnist_local,
    "cifar10": _cifar_local,
    "fsdd": _fsdd_local,
    "mr": _mr_local,
}


# ---------------------------------------------------------------------------- tfds source


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
            if all((data_dir / f).is_file() for f in _MR_FILES):
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


def _tfds_arrays(
    info: DatasetInfo, data_dir: Path, tfds_data_dir: str | None, opts: dict, split: str
) -> tuple[dict[str, Arrays], Arrays]:
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
            m = _FSDD_MEMBER.match(fname)
            if m is None:  # pragma: no cover - tfds' file names follow the pattern
                raise ValueError(f"spoken_digit: unexpected file name {fname!r}")
            wav = np.asarray(r["audio"]).reshape(-1)
            parsed.append((int(m.group(1)), m.group(2), int(m.group(3)), wav))
        return _fsdd_finalize(parsed, opts)
    records = _tfds_records(info, "train", data_dir, tfds_data_dir)
    records.sort(key=lambda r: int(r["index"]))
    sentences = [
        r["sentence"].decode() if isinstance(r["sentence"], bytes) else str(r["sentence"])
        for r in records
    ]
    labels = np.array([r["label"] for r in records], np.int32)
    return _mr_finalize(sentences, labels, opts)


# ------------------------------------------------------------------------------ caching


def _fingerprint(info: DatasetInfo, source: str, opts: dict, files: list[Path], extra: str) -> str:
    stats = []
    for f in files:
        st = f.stat()
        stats.append([f.name, st.st_size, st.st_mtime_ns])
    blob = json.dumps(
        [_CACHE_FORMAT, info.name, source, sorted(opts.items()), stats, extra],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_npz(path: Path, arrays: Arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_npz(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


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
        _check_split(info, split)
    _check_source(source)
    opts = _check_options(info, options)
    root, origin = resolve_data_dir(data_dir)
    tfds_dir = None if tfds_data_dir is None else os.fspath(tfds_data_dir)

    if source == "local":
        missing = [f for f in info.files if not (root / f).is_file()]
        if missing:
            raise _missing_error(info, root, origin, missing)
        fp = _fingerprint(info, source, opts, [root / f for f in info.files], "")
    else:
        fp = _fingerprint(info, source, opts, [], tfds_dir or "default")
    cache = resolve_cache_dir(cache_dir)
    stem = f"{info.name}_{source}_{fp}"
    wanted = [split] if split is not None else []
    if (
        use_cache
        and all((cache / f"{stem}_{s}.npz").is_file() for s in wanted)
        and (cache / f"{stem}_extras.npz").is_file()
    ):
        arrays = _load_npz(cache / f"{stem}_{split}.npz") if split is not None else None
        return arrays, _load_npz(cache / f"{stem}_extras.npz")

    if source == "local":
        splits, extras = _LOCAL_READERS[info.name](root, opts)
    else:
        # tfds reads image data sets split by split; the others need all of them at once.
        splits, extras = _tfds_arrays(info, root, tfds_dir, opts, split or "train")
    if use_cache:
        for s, arrays in splits.items():
            _save_npz(cache / f"{stem}_{s}.npz", arrays)
        _save_npz(cache / f"{stem}_extras.npz", extras)
    return (splits[split] if split is not None else None), extras


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
      **options: data-set options: FSDD ``audio_length`` (default 8000 samples, 1 s);
        MR ``max_length`` (default ``None``: the longest training sentence),
        ``min_count`` (default 1), ``seed`` (default 0) and ``fold`` (0-9, default 0).

    Returns:
      A dict of numpy arrays with the examples on axis 0.

    Raises:
      ValueError: for an unknown ``name``, ``split`` or ``source``, or a bad option value.
      TypeError: for an unknown option.
      DatasetNotFoundError: if a file the local reader needs is missing; the message
        says which file to put where, and how to use tfds instead.
      ImportError: if ``source='tfds'`` must prepare a data set and TensorFlow is missing.
    """
    info = get_dataset_info(name)
    if info.name == "synthetic":
        opts = _check_options(info, options)
        return synthetic(_check_split(info, split), num_classes=info.num_classes, **opts)
    if info.name == "imagenet2012":
        opts = _check_options(info, options)
        root, _ = resolve_data_dir(data_dir)
        return imagenet_arrays(
            _check_split(info, split),
            root,
            source=_check_source(source),
            tfds_data_dir=None if tfds_data_dir is None else os.fspath(tfds_data_dir),
            **opts,
        )
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
