"""Local readers: the data directory's files as numpy arrays (see ``cnn_jax.data.datasets``).

MNIST from its gzipped IDX files, CIFAR-10 from a tarball of JPEGs in the ImageFolder
layout, FSDD from a tarball of 8 kHz WAV files, MR from the two ``rt-polarity`` text
files. ``fsdd_finalize`` and ``mr_finalize`` turn parsed records into the train/test
arrays; the tfds source (``cnn_jax.data._tfds``) shares them, so both sources give the
same arrays. Every reader returns ``(splits, extras)``: ``{split: {key: array}}`` and
the data set's extra arrays (FSDD's speaker names, MR's vocabulary).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import struct
import wave
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cnn_jax.data import text
from cnn_jax.data.archive import iter_archive_files

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_FILE",
    "FSDD_FILE",
    "FSDD_MEMBER",
    "LOCAL_READERS",
    "MNIST_FILES",
    "MR_FILES",
    "MR_NUM_FOLDS",
    "Splits",
    "fsdd_finalize",
    "mr_finalize",
]

Arrays = dict[str, np.ndarray]
Splits = tuple[dict[str, Arrays], Arrays]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

#: MR has no official split: the sentences are cut into this many folds.
MR_NUM_FOLDS = 10

MNIST_FILES = {
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}
CIFAR_FILE = "cifar10_jpeg/cifar10_jpeg.tar.gz"
FSDD_FILE = "fsdd/fsdd_recordings.tar.gz"
MR_FILES = ("rt_polarity/rt-polarity.neg", "rt_polarity/rt-polarity.pos")


#: The most bytes of data an IDX file may declare (MNIST's largest holds 47 MB).
_IDX_MAX_BYTES = 1 << 31


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Reads a gzipped IDX file of uint8; every error names the file.

    The header is checked before the data is read: its dimensions are multiplied as
    Python ints (no 64-bit wrap-around), must stay within ``_IDX_MAX_BYTES``, and the
    data that follows must hold exactly that many bytes, no more.
    """
    where = os.fspath(path)
    header_size = 4 + 4 * ndim
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(header_size)
            if len(header) != header_size:
                raise ValueError(
                    f"{where!r}: the IDX header is {len(header)} bytes, expected {header_size}"
                )
            found, *dims = struct.unpack(f">{1 + ndim}I", header)
            if found != magic:
                raise ValueError(
                    f"{where!r} is not an IDX file of {ndim} dimension(s) of uint8 "
                    f"(magic number {found:#010x}, expected {magic:#010x})"
                )
            shape = tuple(dims)
            size = math.prod(shape)
            if size > _IDX_MAX_BYTES:
                raise ValueError(
                    f"{where!r}: header says shape {shape}, {size} values, more than the "
                    f"{_IDX_MAX_BYTES} an IDX file may hold"
                )
            raw = f.read(size + 1)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(
            f"{where!r}: truncated or corrupt gzip data ({type(e).__name__}: {e})"
        ) from e
    if len(raw) != size:
        raise ValueError(
            f"{where!r}: header says shape {shape} ({size} values) but "
            f"{'more follow' if len(raw) > size else f'only {len(raw)} follow'}"
        )
    return np.frombuffer(raw, np.uint8).reshape(shape)


def _mnist_local(data_dir: Path, opts: dict) -> Splits:
    splits = {}
    for split, (img_file, lab_file) in MNIST_FILES.items():
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


def _cifar_local(data_dir: Path, opts: dict) -> Splits:
    Image = _import_pil()
    path = data_dir / CIFAR_FILE
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


FSDD_MEMBER = re.compile(r"^(?:.*/)?(\d)_([A-Za-z]+)_(\d+)\.wav$")


def _decode_wav(data: bytes, where: str) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 8000:
            raise ValueError(
                f"{where}: expected 8 kHz mono 16-bit PCM, got {w.getnchannels()} channel(s), "
                f"{8 * w.getsampwidth()} bits, {w.getframerate()} Hz"
            )
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def fsdd_finalize(records: list[tuple[int, str, int, np.ndarray]], opts: dict) -> Splits:
    """``records``: (digit, speaker, index, int waveform) -> the train/test arrays.

    The test split is recordings 0-4 of every speaker and digit, or, with the option
    ``test_speakers``, every recording of those speakers (a speaker-independent split).
    """
    length = opts["audio_length"]
    records = sorted(records, key=lambda r: (r[1], r[0], r[2]))
    speakers = sorted({r[1] for r in records})
    held_out = opts.get("test_speakers")
    if held_out is not None:
        unknown = sorted(set(held_out) - set(speakers))
        if unknown or set(held_out) >= set(speakers):
            raise ValueError(
                f"`test_speakers` (={tuple(held_out)!r}) must name some, not all, of the "
                f"speakers {tuple(speakers)!r}" + (f"; unknown: {unknown}" if unknown else "")
            )

    def is_test(record: tuple[int, str, int, np.ndarray]) -> bool:
        return record[1] in held_out if held_out is not None else record[2] < 5

    splits = {}
    for split in ("train", "test"):
        sel = [r for r in records if is_test(r) == (split == "test")]
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


def _fsdd_local(data_dir: Path, opts: dict) -> Splits:
    path = data_dir / FSDD_FILE
    records = []
    for name, data in iter_archive_files(path):
        m = FSDD_MEMBER.match(name)
        if m is None:
            continue
        wav = _decode_wav(data, f"{os.fspath(path)!r}: {name!r}")
        records.append((int(m.group(1)), m.group(2), int(m.group(3)), wav))
    return fsdd_finalize(records, opts)


def mr_finalize(sentences: list[str], labels: np.ndarray, opts: dict) -> Splits:
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


def _mr_local(data_dir: Path, opts: dict) -> Splits:
    sentences, labels = [], []
    for label, rel in enumerate(MR_FILES):  # neg = 0, pos = 1
        with open(data_dir / rel, encoding="latin-1") as f:
            lines = [line.strip() for line in f]
        lines = [s for s in lines if s]
        sentences += lines
        labels += [label] * len(lines)
    return mr_finalize(sentences, np.array(labels, np.int32), opts)


LOCAL_READERS: dict[str, Callable[[Path, dict], Splits]] = {
    "mnist": _mnist_local,
    "cifar10": _cifar_local,
    "fsdd": _fsdd_local,
    "mr": _mr_local,
}
