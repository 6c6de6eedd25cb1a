"""Tests for cnn_jax.data's data sets (readers, caching, options) and safe extraction.

Pipelines: tests/test_data_pipeline.py; augmentation: tests/test_data_augmentations.py.

Tests that read the real data sets use ``../shared/data`` (or ``CNN_JAX_DATA_DIR``)
and skip when it is absent; their decoded arrays go to the default cache
(``CNN_JAX_CACHE_DIR`` or ``~/.cache/cnn_jax``), so only the first run decodes CIFAR-10.
"""

import importlib.util
import io
import os
import tarfile

import numpy as np
import pytest

from cnn_jax.data import (
    DatasetNotFoundError,
    UnsafeArchiveError,
    get_dataset_info,
    input_pipeline,
    iter_archive_files,
    load_dataset,
    load_vocabulary,
    preprocess,
    resolve_data_dir,
    safe_extract,
    text,
)

DATA_DIR, _ = resolve_data_dir()
HAVE_DATA = DATA_DIR.is_dir()
needs_data = pytest.mark.skipif(
    not HAVE_DATA,
    reason=f"shared data directory {os.fspath(DATA_DIR)!r} not found "
    "(set CNN_JAX_DATA_DIR to the folder holding mnist/, cifar10_jpeg/, fsdd/, rt_polarity/)",
)


# ------------------------------------------------------------------------------ readers


@pytest.fixture(scope="module")
def mnist():
    return {s: load_dataset("mnist", s) for s in ("train", "test")}


@pytest.fixture(scope="module")
def cifar10():
    return {s: load_dataset("cifar10", s) for s in ("train", "test")}


@pytest.fixture(scope="module")
def fsdd():
    return {s: load_dataset("fsdd", s) for s in ("train", "test")}


@pytest.fixture(scope="module")
def mr():
    return {s: load_dataset("mr", s) for s in ("train", "test")}


@needs_data
def test_mnist(mnist):
    for split, n in (("train", 60000), ("test", 10000)):
        d = mnist[split]
        assert d["image"].shape == (n, 28, 28, 1) and d["image"].dtype == np.uint8
        assert d["label"].shape == (n,) and d["label"].dtype == np.int32
        assert set(np.unique(d["label"])) == set(range(10))
    mean = preprocess.channel_mean(mnist["train"]["image"])
    std = preprocess.channel_std(mnist["train"]["image"])
    np.testing.assert_allclose(mean, preprocess.DATASET_STATS["mnist"][0], atol=1e-4)
    np.testing.assert_allclose(std, preprocess.DATASET_STATS["mnist"][1], atol=1e-4)
    assert np.bincount(mnist["test"]["label"]).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip


@needs_data
def test_cifar10(cifar10):
    for split, n in (("train", 50000), ("test", 10000)):
        d = cifar10[split]
        assert d["image"].shape == (n, 32, 32, 3) and d["image"].dtype == np.uint8
        assert d["label"].dtype == np.int32
        assert np.bincount(d["label"]).tolist() == [n // 10] * 10
    mean = preprocess.channel_mean(cifar10["train"]["image"][::5])
    # JPEG re-encoded: close to, not equal to, the original pixels' statistics.
    np.testing.assert_allclose(mean, preprocess.DATASET_STATS["cifar10"][0], atol=0.01)


@needs_data
def test_fsdd(fsdd):
    for split, n in (("train", 2700), ("test", 300)):
        d = fsdd[split]
        assert d["audio"].shape == (n, 8000, 1) and d["audio"].dtype == np.float32
        assert d["audio"].min() >= -1.0 and d["audio"].max() < 1.0
        assert d["length"].dtype == np.int32 and d["length"].max() <= 8000
        assert d["label"].dtype == np.int32 and set(np.unique(d["label"])) == set(range(10))
        assert len(np.unique(d["speaker"])) == 6
        # Zero padding beyond each recording's length.
        short = np.argmin(d["length"])
        assert not d["audio"][short, d["length"][short] :].any()
    assert np.bincount(fsdd["test"]["label"]).tolist() == [30] * 10


@needs_data
def test_fsdd_audio_length_option(tmp_path):
    d = load_dataset("fsdd", "test", cache_dir=tmp_path, audio_length=4000)
    assert d["audio"].shape == (300, 4000, 1) and d["length"].max() == 4000


@needs_data
def test_mr(mr):
    train, test = mr["train"], mr["test"]
    assert len(train["label"]) + len(test["label"]) == 10662
    assert len(test["label"]) == 1067  # fold 0 of np.array_split(10662, 10)
    assert np.bincount(np.concatenate([train["label"], test["label"]])).tolist() == [5331, 5331]
    for d in (train, test):
        assert d["tokens"].dtype == np.int32 and d["tokens"].shape[1] == 56  # Kim's max length
        assert d["length"].dtype == np.int32 and d["label"].dtype == np.int32
        assert (d["tokens"][np.arange(56)[None] >= d["length"][:, None]] == 0).all()
    assert sorted(np.concatenate([train["index"], test["index"]]).tolist()) == list(range(10662))
    vocab = load_vocabulary("mr")
    assert vocab[:2] == [text.PAD, text.UNK]
    assert train["tokens"].max() < len(vocab) and test["tokens"].max() < len(vocab)
    # The vocabulary is built on the training folds only: no UNK in train, some in test.
    assert not (train["tokens"] == 1).any() and (test["tokens"] == 1).any()


@needs_data
def test_mr_folds_are_disjoint_and_deterministic(tmp_path, mr):
    fold1 = load_dataset("mr", "test", cache_dir=tmp_path, fold=1)
    assert not set(fold1["index"]) & set(mr["test"]["index"])
    again = load_dataset("mr", "test", cache_dir=tmp_path, use_cache=False)
    for k in again:
        np.testing.assert_array_equal(again[k], mr["test"][k])


def test_clean_str_and_vocabulary():
    assert (
        text.clean_str("It's a (good) film, isn't it?!") == "it 's a ( good ) film , is n't it ? !"
    )
    assert text.clean_str("We've  got   THE <b>best</b>", lower=False) == "We 've got THE b best b"
    vocab = text.build_vocabulary([["b", "a", "b"], ["c"]])
    assert vocab == [text.PAD, text.UNK, "b", "a", "c"]
    ids, lengths = text.encode([["a", "zzz", "b"], ["c"]], vocab, 2)
    assert ids.tolist() == [[3, 1], [4, 0]] and lengths.tolist() == [2, 1]
    with pytest.raises(ValueError, match="max_length"):
        text.encode([["a"]], vocab, 0)


@needs_data
def test_cache_files_written_and_reused(tmp_path, mnist):
    d = load_dataset("mnist", "test", cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert any(f.endswith("_test.npz") for f in files)
    assert any(f.endswith("_train.npz") for f in files)
    np.testing.assert_array_equal(d["image"], mnist["test"]["image"])
    again = load_dataset("mnist", "test", cache_dir=tmp_path)
    np.testing.assert_array_equal(again["label"], d["label"])
    none = tmp_path / "none"
    load_dataset("mnist", "test", cache_dir=none, use_cache=False)
    assert not none.exists()


@pytest.mark.parametrize("name", ["mnist", "cifar10", "fsdd", "mr"])
def test_missing_files_say_what_to_put_where(tmp_path, name):
    info = get_dataset_info(name)
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(name, "train", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert os.fspath(tmp_path / info.files[0]) in msg
    assert "source='tfds'" in msg and "CNN_JAX_DATA_DIR" in msg
    assert not (tmp_path / "cache").exists()


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_JAX_DATA_DIR", os.fspath(tmp_path))
    assert resolve_data_dir()[0] == tmp_path
    with pytest.raises(DatasetNotFoundError, match="CNN_JAX_DATA_DIR"):
        load_dataset("mnist", "test", cache_dir=tmp_path / "cache")


def test_bad_names_splits_sources_and_options(tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set `name` \(='imagenet21k'\)"):
        load_dataset("imagenet21k", "train")
    with pytest.raises(ValueError, match=r"`split` \(='validation'\)"):
        load_dataset("mnist", "validation")
    with pytest.raises(ValueError, match=r"`source` \(='hub'\)"):
        load_dataset("mnist", "train", source="hub")
    with pytest.raises(TypeError, match="'audio_length'"):
        load_dataset("mnist", "train", audio_length=3)
    with pytest.raises(ValueError, match="`fold`"):
        load_dataset("mr", "train", fold=10)
    assert get_dataset_info("spoken_digit").name == "fsdd"
    assert get_dataset_info("rt_polarity").name == "mr"


@needs_data
def test_tfds_source_for_mr_matches_local(tmp_path, mr):
    pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")
    d = load_dataset("mr", "test", source="tfds", tfds_data_dir=tmp_path / "tfds",
                     cache_dir=tmp_path / "cache")  # fmt: skip
    for k in mr["test"]:
        np.testing.assert_array_equal(d[k], mr["test"][k])
    assert (tmp_path / "tfds" / "rt_polarity").is_dir()


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed"
)
def test_tfds_source_without_tensorflow_says_how_to_install(tmp_path):
    with pytest.raises(ImportError, match="pip install tensorflow"):
        load_dataset("mnist", "test", source="tfds", tfds_data_dir=tmp_path,
                     cache_dir=tmp_path / "cache")  # fmt: skip


@needs_data
def test_input_pipeline_mnist_lenet_preprocessing(mnist):
    cfg = {"dataset": "mnist", "batch_size": 32, "normalization": "standardize", "pad_to": 32}
    batch = next(input_pipeline(cfg, "train", rng_seed=0))
    assert batch["image"].shape == (32, 32, 32, 1) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (32,)
    bg = -0.1307 / 0.3081
    np.testing.assert_allclose(batch["image"][:, :2], bg, rtol=1e-6)  # padded background
    cfg = {"dataset": "mnist", "batch_size": 16, "normalization": "mean_image", "pad_to": 32}
    batch = next(input_pipeline(cfg, "test", rng_seed=0))
    assert batch["image"].shape == (16, 32, 32, 1) and batch["mask"].all()
    np.testing.assert_allclose(batch["image"][:, 0], 0.0)  # the border is always background


# ------------------------------------------------------------------------- safe_extract


def _tar(path, members):
    """Writes a .tar.gz with ``members``: (TarInfo-kwargs, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info_kwargs, data in members:
            info = tarfile.TarInfo(info_kwargs.pop("name"))
            for k, v in info_kwargs.items():
                setattr(info, k, v)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def test_safe_extract_benign(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [
        ({"name": "d", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
        ({"name": "d/a.txt"}, b"hello"),
        ({"name": "./b.txt"}, b"world"),
    ])  # fmt: skip
    written = safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in written) == ["a.txt", "b.txt"]
    assert (tmp_path / "out" / "d" / "a.txt").read_bytes() == b"hello"
    assert [n for n, _ in iter_archive_files(archive)] == ["d/a.txt", "b.txt"]


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([({"name": "good.txt"}, b"x"), ({"name": "../evil.txt"}, b"x")], r"'\.\.'"),
        ([({"name": "a/../../evil.txt"}, b"x")], r"'\.\.'"),
        ([({"name": "/tmp/cnn_jax_abs_evil.txt"}, b"x")], "absolute path"),
        ([({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc"}, None),
          ({"name": "link/evil.txt"}, b"x")], "symbolic link"),
        ([({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside.txt"}, None)],
         "hard link"),
        ([({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)],
         "special file"),
        ([({"name": "fifo", "type": tarfile.FIFOTYPE}, None)], "special file"),
    ],
    ids=["traversal", "nested-traversal", "absolute", "symlink", "hardlink", "device", "fifo"],
)  # fmt: skip
def test_safe_extract_rejects_attacks(tmp_path, members, match):
    archive = _tar(tmp_path / "evil.tar.gz", members)
    dest = tmp_path / "sandbox" / "out"
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(UnsafeArchiveError, match=match):
        safe_extract(archive, dest)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not os.path.exists("/tmp/cnn_jax_abs_evil.txt")
    with pytest.raises(UnsafeArchiveError, match=match):
        list(iter_archive_files(archive))


def test_safe_extract_rejects_escape_through_existing_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside)
    archive = _tar(tmp_path / "a.tar.gz", [({"name": "link/evil.txt"}, b"x")])
    with pytest.raises(UnsafeArchiveError, match="outside `dest`"):
        safe_extract(archive, dest)
    assert not any(outside.iterdir())


def test_safe_extract_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match="tar_path"):
        safe_extract(tmp_path / "nope.tar.gz", tmp_path / "out")
