"""cnn_jax.data under faults and hostile input: every fault is injected for real.

Crafted IDX files and archives are built by the tests in ``tmp_path``; the data
directory is a small fake MNIST, so nothing here needs the shared data.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import struct
import tarfile
import tracemalloc

import numpy as np
import pytest

from cnn_jax.data import _cache, iter_archive_files, load_dataset

_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def _write_gz(path, raw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0))


def _fake_mnist(root, train_labels=(0, 1, 2, 3), test_labels=(4, 5, 9), seed=0):
    rng = np.random.default_rng(seed)
    names = {"train": ("train", train_labels), "test": ("t10k", test_labels)}
    for prefix, labels in names.values():
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        _write_gz(root / f"mnist/{prefix}-images-idx3-ubyte.gz", _idx_bytes(_IMAGES_MAGIC, images))
        _write_gz(
            root / f"mnist/{prefix}-labels-idx1-ubyte.gz",
            _idx_bytes(_LABELS_MAGIC, np.asarray(labels, np.uint8)),
        )
    return root


# ------------------------------------------------------------------ 4: label range


def test_labels_outside_num_classes_are_refused(tmp_path):
    data = _fake_mnist(tmp_path / "data", train_labels=(0, 1, 10, 3))
    with pytest.raises(ValueError) as e:
        load_dataset("mnist", "train", data_dir=data, use_cache=False)
    msg = str(e.value)
    assert "'mnist'" in msg and "'train'" in msg and "10" in msg and "[0, 10)" in msg
    # The good split of the same files loads.
    assert load_dataset("mnist", "test", data_dir=data, use_cache=False)["label"].tolist() == [
        4,
        5,
        9,
    ]


def test_labels_outside_num_classes_in_the_cache_are_refused(tmp_path):
    data = _fake_mnist(tmp_path / "data")
    cache = tmp_path / "cache"
    load_dataset("mnist", "train", data_dir=data, cache_dir=cache)
    (npz,) = cache.glob("*_train.npz")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["label"][1] = -1
    np.savez(npz, **arrays)
    with pytest.raises(ValueError, match=r"'train'.*-1.*\[0, 10\)"):
        load_dataset("mnist", "train", data_dir=data, cache_dir=cache)


# ------------------------------------------------------------------ 8: stale cache


def test_same_size_same_mtime_replacement_is_not_served_from_the_cache(tmp_path):
    data = _fake_mnist(tmp_path / "data")
    cache = tmp_path / "cache"
    first = load_dataset("mnist", "train", data_dir=data, cache_dir=cache)
    assert first["label"].tolist() == [0, 1, 2, 3]
    labels = data / "mnist/train-labels-idx1-ubyte.gz"
    before = os.stat(labels)
    _write_gz(labels, _idx_bytes(_LABELS_MAGIC, np.array([3, 2, 1, 0], np.uint8)))
    os.utime(labels, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(labels)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = load_dataset("mnist", "train", data_dir=data, cache_dir=cache)
    assert again["label"].tolist() == [3, 2, 1, 0]


# ------------------------------------------------------------------ 15: IDX errors


def _mnist_error(tmp_path, raw: bytes, *, gz: bool = True) -> str:
    data = _fake_mnist(tmp_path / "data")
    target = data / "mnist/train-images-idx3-ubyte.gz"
    if gz:
        _write_gz(target, raw)
    else:
        target.write_bytes(raw)
    with pytest.raises(ValueError) as e:
        load_dataset("mnist", "train", data_dir=data, use_cache=False)
    msg = str(e.value)
    assert os.fspath(target) in msg, msg
    return msg


def test_truncated_gzip_names_the_file(tmp_path):
    images = np.zeros((4, 28, 28), np.uint8)
    whole = gzip.compress(_idx_bytes(_IMAGES_MAGIC, images))
    msg = _mnist_error(tmp_path, whole[: len(whole) // 2], gz=False)
    assert "truncated" in msg or "end" in msg.lower()


def test_not_gzip_names_the_file(tmp_path):
    images = np.zeros((4, 28, 28), np.uint8)
    _mnist_error(tmp_path, _idx_bytes(_IMAGES_MAGIC, images), gz=False)


def test_short_idx_header_names_the_file(tmp_path):
    msg = _mnist_error(tmp_path, b"\x00\x00\x08\x03\x00\x00")
    assert "header" in msg


def test_bad_idx_magic_names_the_file(tmp_path):
    msg = _mnist_error(tmp_path, _idx_bytes(0x00000802, np.zeros((4, 28, 28), np.uint8)))
    assert "magic" in msg


def test_idx_size_mismatch_names_the_file(tmp_path):
    raw = _idx_bytes(_IMAGES_MAGIC, np.zeros((4, 28, 28), np.uint8))
    msg = _mnist_error(tmp_path, raw[:-5])
    assert "(4, 28, 28)" in msg


def test_idx_dimensions_whose_product_overflows_are_refused(tmp_path):
    # 2**31 * 2**31 * 4 == 2**64: zero in 64-bit arithmetic, as is the data that follows.
    header = struct.pack(">4I", _IMAGES_MAGIC, 2**31, 2**31, 4)
    msg = _mnist_error(tmp_path, header)
    assert str(2**64) in msg


# ------------------------------------------------------------------ 16: cache faults


def test_truncated_cache_file_is_reported_and_decoded_again(tmp_path, caplog):
    data = _fake_mnist(tmp_path / "data")
    cache = tmp_path / "cache"
    first = load_dataset("mnist", "train", data_dir=data, cache_dir=cache)
    (npz,) = cache.glob("*_train.npz")
    raw = npz.read_bytes()
    npz.write_bytes(raw[: len(raw) // 2])
    with caplog.at_level(logging.WARNING, logger="cnn_jax.data"):
        again = load_dataset("mnist", "train", data_dir=data, cache_dir=cache)
    np.testing.assert_array_equal(again["image"], first["image"])
    np.testing.assert_array_equal(again["label"], first["label"])
    assert os.fspath(npz) in caplog.text and "BadZipFile" in caplog.text
    with np.load(npz) as z:  # written afresh from the source
        np.testing.assert_array_equal(z["label"], first["label"])


def test_unwritable_cache_directory_is_skipped_with_a_warning(tmp_path, caplog):
    data = _fake_mnist(tmp_path / "data")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    cache = blocker / "cache"  # cannot be created, even by root
    with caplog.at_level(logging.WARNING, logger="cnn_jax.data"):
        d = load_dataset("mnist", "train", data_dir=data, cache_dir=cache)
    assert d["label"].tolist() == [0, 1, 2, 3]
    assert os.fspath(cache) in caplog.text
    assert blocker.read_text() == "not a directory"


def test_cache_write_permission_error_is_skipped_with_a_warning(tmp_path, caplog, monkeypatch):
    data = _fake_mnist(tmp_path / "data")
    cache = tmp_path / "cache"

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(cache))

    monkeypatch.setattr(_cache.tempfile, "mkstemp", refuse)
    with caplog.at_level(logging.WARNING, logger="cnn_jax.data"):
        d = load_dataset("mnist", "test", data_dir=data, cache_dir=cache)
    assert d["label"].tolist() == [4, 5, 9]
    assert "Permission denied" in caplog.text and os.fspath(cache) in caplog.text
    assert not list(cache.glob("*.npz"))


# ------------------------------------------------------------------ 3: archive bombs


class _Zeros(io.RawIOBase):
    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def _bomb(path, size: int) -> None:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        small = tarfile.TarInfo("ok.txt")
        small.size = 2
        tar.addfile(small, io.BytesIO(b"hi"))
        member = tarfile.TarInfo("big.bin")
        member.size = size
        tar.addfile(member, io.BufferedReader(_Zeros(size), 1 << 20))


def test_archive_member_over_the_decompressed_limit_is_refused(tmp_path):
    path = tmp_path / "bomb.tar.gz"
    _bomb(path, 200 << 20)
    assert path.stat().st_size < 1 << 20  # a small file ...
    tracemalloc.start()
    try:
        names = []
        with pytest.raises(ValueError) as e:
            for name, _ in iter_archive_files(path):
                names.append(name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert names == ["ok.txt"]
    msg = str(e.value)
    assert "'big.bin'" in msg and os.fspath(path) in msg and str(64 << 20) in msg
    assert peak < 32 << 20  # ... that never grows memory by its decompressed size


def test_archive_limits_are_arguments(tmp_path):
    path = tmp_path / "small.tar.gz"
    _bomb(path, 3000)
    with pytest.raises(ValueError, match=r"'big\.bin'.*2048"):
        list(iter_archive_files(path, max_member_bytes=2048))
    with pytest.raises(ValueError, match=r"total.*1000"):
        list(iter_archive_files(path, max_member_bytes=4096, max_total_bytes=1000))
    assert [n for n, _ in iter_archive_files(path)] == ["ok.txt", "big.bin"]


def test_archive_whose_gzip_trailer_lies_is_still_bounded(tmp_path, monkeypatch):
    from cnn_jax.data import archive

    monkeypatch.setattr(archive, "_IN_MEMORY_DECOMPRESSED_LIMIT", 1 << 20)
    path = tmp_path / "liar.tar.gz"
    _bomb(path, 16 << 20)
    raw = bytearray(path.read_bytes())
    raw[-4:] = struct.pack("<I", 1000)  # claims 1000 bytes once decompressed
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"'big\.bin'"):
            list(iter_archive_files(path, max_member_bytes=4 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # not the 16 MB the archive decompresses to
