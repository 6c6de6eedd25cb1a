"""Tests for cnn_jax.data: readers, caching, pipelines, augmentation, safe extraction.

Tests that read the real data sets use ``../shared/data`` (or ``CNN_JAX_DATA_DIR``)
and skip when it is absent; their decoded arrays go to the default cache
(``CNN_JAX_CACHE_DIR`` or ``~/.cache/cnn_jax``), so only the first run decodes CIFAR-10.
"""

import importlib.util
import io
import itertools
import math
import os
import tarfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cnn_jax.data import (
    BatchIterator,
    DatasetNotFoundError,
    UnsafeArchiveError,
    augment,
    augmentation_names,
    data_sharding,
    get_augmentation,
    get_dataset_info,
    input_pipeline,
    iter_archive_files,
    load_dataset,
    load_vocabulary,
    prefetch_to_device,
    preprocess,
    resolve_data_dir,
    safe_extract,
    text,
)
from cnn_jax.data import augmentations as aug

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


# ---------------------------------------------------------------------------- pipelines


def _toy(n=103):
    return {"x": np.arange(n, dtype=np.int64), "label": (np.arange(n) % 7).astype(np.int32)}


def _take(it, n):
    return [b["x"].copy() for b in itertools.islice(it, n)]


def test_pipeline_is_deterministic_and_epochs_differ():
    cfg = ml_collections.ConfigDict({"dataset": "mnist", "batch_size": 10})
    a = _take(input_pipeline(cfg, "train", rng_seed=3, data=_toy()), 30)
    b = _take(input_pipeline(cfg, "train", rng_seed=3, data=_toy()), 30)
    c = _take(input_pipeline(cfg, "train", rng_seed=4, data=_toy()), 30)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any((x != y).any() for x, y in zip(a, c))
    epoch0, epoch1 = np.concatenate(a[:10]), np.concatenate(a[10:20])
    assert len(set(epoch0)) == 100 and len(set(epoch1)) == 100  # remainder dropped
    assert (epoch0 != epoch1).any()
    # Epoch e is the permutation seeded with (seed, e).
    np.testing.assert_array_equal(epoch1, np.random.default_rng([3, 1]).permutation(103)[:100])


def test_pipeline_resumes_at_start_step():
    cfg = {"dataset": "mnist", "batch_size": 8}
    full = _take(input_pipeline(cfg, "train", rng_seed=0, data=_toy()), 40)
    resumed = input_pipeline(cfg, "train", rng_seed=0, data=_toy(), start_step=17)
    assert resumed.step == 17
    for x, y in zip(full[17:], _take(resumed, 23)):
        np.testing.assert_array_equal(x, y)
    assert resumed.step == 40


def test_pipeline_num_epochs_and_no_shuffle():
    cfg = {"dataset": "mnist", "batch_size": 10, "num_epochs": 2, "shuffle": False}
    it = input_pipeline(cfg, "train", rng_seed=0, data=_toy())
    batches = [b["x"] for b in it]
    assert len(batches) == it.num_steps == 20
    np.testing.assert_array_equal(np.concatenate(batches[:10]), np.arange(100))


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_training_shards_are_disjoint(process_count):
    cfg = {"dataset": "mnist", "batch_size": 6 * process_count}
    seen = []
    steps = set()
    for p in range(process_count):
        it = input_pipeline(cfg, "train", rng_seed=1, data=_toy(), process_index=p,
                            process_count=process_count)  # fmt: skip
        steps.add(it.steps_per_epoch)
        seen.append(np.concatenate(_take(it, it.steps_per_epoch)))
        assert all(len(b) == 6 for b in _take(it, 2))
    assert len(steps) == 1
    for i, j in itertools.combinations(range(process_count), 2):
        assert not set(seen[i]) & set(seen[j])


@pytest.mark.parametrize("process_count", [2, 3])
def test_global_batches_do_not_depend_on_the_process_count(process_count):
    """Process parts, concatenated in process order, are the single-process batches."""
    cfg = {"dataset": "mnist", "batch_size": 6 * process_count}
    one = input_pipeline(cfg, "train", rng_seed=3, data=_toy())
    parts = [
        input_pipeline(
            cfg, "train", rng_seed=3, data=_toy(), process_index=p, process_count=process_count
        )
        for p in range(process_count)
    ]
    assert one.steps_per_epoch == parts[0].steps_per_epoch
    for step in (0, 1, one.steps_per_epoch + 2):
        joined = np.concatenate([it.batch_at(step)["x"] for it in parts])
        np.testing.assert_array_equal(joined, one.batch_at(step)["x"])


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_eval_pads_and_counts_every_example_once(process_count):
    cfg = {"dataset": "mnist", "batch_size": 4, "eval_batch_size": 8 * process_count}
    counts = np.zeros(103, int)
    steps = set()
    for p in range(process_count):
        it = input_pipeline(cfg, "test", rng_seed=0, data=_toy(), process_index=p,
                            process_count=process_count)  # fmt: skip
        batches = list(it)
        steps.add(len(batches))
        for b in batches:
            assert b["x"].shape == (8,) and b["mask"].dtype == bool
            np.add.at(counts, b["x"][b["mask"]], 1)
            assert not b["x"][~b["mask"]].any() and not b["label"][~b["mask"]].any()
    assert (counts == 1).all()
    assert steps == {math.ceil(math.ceil(103 / process_count) / 8)}


def test_pipeline_errors():
    with pytest.raises(ValueError, match="divisible by `process_count`"):
        input_pipeline({"dataset": "mnist", "batch_size": 10}, "train", rng_seed=0,
                       data=_toy(), process_count=3)  # fmt: skip
    with pytest.raises(ValueError, match="process_index"):
        input_pipeline({"dataset": "mnist", "batch_size": 10}, "train", rng_seed=0,
                       data=_toy(), process_index=2, process_count=2)  # fmt: skip
    with pytest.raises(ValueError, match=r"config\.dataset"):
        input_pipeline({"batch_size": 10}, "train", rng_seed=0, data=_toy())
    with pytest.raises(ValueError, match="larger than the training data"):
        BatchIterator(_toy(), 200, rng_seed=0, training=True)
    with pytest.raises(ValueError, match="rng_seed"):
        BatchIterator(_toy(), 2, rng_seed=-1, training=True)
    with pytest.raises(ValueError, match="normalization"):
        input_pipeline({"dataset": "mnist", "batch_size": 2, "normalization": "zca"}, "train",
                       rng_seed=0, data={"image": np.zeros((4, 2, 2, 1), np.uint8)})  # fmt: skip


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


def test_preprocess_functions():
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    x = preprocess.to_float(images)
    np.testing.assert_allclose(preprocess.channel_mean(images), x.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(preprocess.channel_std(images), x.std(axis=(0, 1, 2)), rtol=1e-4)
    m = preprocess.mean_image(images)
    np.testing.assert_allclose(preprocess.subtract_mean(images, m).mean(0), 0, atol=1e-6)
    z = preprocess.normalize(jnp.asarray(images), [0.5] * 3, [0.25] * 3)
    assert isinstance(z, jax.Array)
    np.testing.assert_allclose(z, (x - 0.5) / 0.25, rtol=1e-5, atol=1e-6)
    p = preprocess.pad_images(np.ones((2, 28, 28, 1), np.uint8), 32)
    assert p.shape == (2, 32, 32, 1) and p.sum() == 2 * 28 * 28 and p[0, 2, 2, 0] == 1
    with pytest.raises(ValueError, match="`std`"):
        preprocess.normalize(images, [0.5] * 3, [0.0] * 3)
    with pytest.raises(ValueError, match="`mean`"):
        preprocess.normalize(images, [0.5] * 2, [1.0] * 2)
    with pytest.raises(ValueError, match="`size`"):
        preprocess.pad_images(np.ones((1, 28, 28, 1)), 20)


def test_prefetch_to_device_with_sharding():
    it = BatchIterator(_toy(), 8, rng_seed=0, training=True, num_epochs=1)
    expected = [b["x"] for b in BatchIterator(_toy(), 8, rng_seed=0, training=True, num_epochs=1)]
    sharding = data_sharding()
    out = list(prefetch_to_device(it, size=3, sharding=sharding))
    assert len(out) == len(expected)
    for got, want in zip(out, expected):
        assert isinstance(got["x"], jax.Array) and got["x"].sharding == sharding
        np.testing.assert_array_equal(np.asarray(got["x"]), want)
    plain = list(prefetch_to_device(iter([{"a": np.ones(2)}]), size=2))
    assert isinstance(plain[0]["a"], jax.Array)
    with pytest.raises(ValueError, match="`size`"):
        next(prefetch_to_device(iter([]), size=0))


# -------------------------------------------------------------------------- augmentation


def _images(n=6, h=8, w=8, c=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(n, h, w, c)), jnp.float32)


KEY = jax.random.key(42)


def test_flip_twice_is_identity():
    x = _images()
    once = aug.horizontal_flip(x, KEY)
    np.testing.assert_array_equal(aug.horizontal_flip(once, KEY), x)
    np.testing.assert_array_equal(aug.horizontal_flip(x, KEY, p=1.0), x[:, :, ::-1])
    flipped = [bool((once[i] != x[i]).any()) for i in range(6)]
    assert any(flipped) and not all(flipped)  # per-example decisions at p = 0.5
    np.testing.assert_array_equal(aug.vertical_flip(x, KEY, p=1.0), x[:, ::-1])


def test_rot90():
    x = _images()
    y = x
    for _ in range(4):
        y = aug.rot90(y, k=1)
    np.testing.assert_array_equal(y, x)
    r, xn = np.asarray(aug.rot90(x, KEY)), np.asarray(x)
    ks = [next(k for k in range(4) if (np.rot90(xn[i], k) == r[i]).all()) for i in range(6)]
    assert len(set(ks)) > 1
    with pytest.raises(ValueError, match="square"):
        aug.rot90(_images(h=4, w=6), KEY)


def test_rotate_by_90_degrees_matches_rot90_and_0_is_identity():
    x = _images()
    np.testing.assert_allclose(aug.rotate(x, KEY, angle=(90, 90)),
                               np.rot90(np.asarray(x), 1, axes=(1, 2)), atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(aug.rotate(x, KEY, angle=0), x, atol=1e-6)
    y = np.asarray(aug.rotate(x, KEY, angle=(45, 45)))
    assert y.shape == x.shape and (y[:, 0, 0] == 0).all()  # corners fall outside


def test_random_crop():
    x = _images()
    y = aug.random_crop(x, KEY, padding=4)
    assert y.shape == x.shape
    np.testing.assert_array_equal(aug.random_crop(x, KEY, padding=0), x)
    z = aug.random_crop(x, KEY, size=5, padding=2, padding_mode="zeros")
    assert z.shape == (6, 5, 5, 3)
    padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(6):  # every crop is a window of the padded image
        assert any((padded[i, a : a + 5, b : b + 5] == z[i]).all()
                   for a in range(8) for b in range(8))  # fmt: skip
    with pytest.raises(ValueError, match="padding_mode"):
        aug.random_crop(x, KEY, padding_mode="wrap")
    with pytest.raises(ValueError, match="`size`"):
        aug.random_crop(x, KEY, size=20)


def test_inception_crop():
    x = _images()
    y = aug.inception_crop(x, KEY, size=6)
    assert y.shape == (6, 6, 6, 3)
    same = aug.inception_crop(_images(h=4, w=6), KEY, scale=(1.0, 1.0), ratio=(1.5, 1.5))
    np.testing.assert_allclose(same, _images(h=4, w=6), atol=1e-5)
    with pytest.raises(ValueError, match="`scale`"):
        aug.inception_crop(x, KEY, scale=(0.5, 2.0))


def test_cutout():
    ones = np.ones((6, 8, 8, 3), np.float32)
    y = np.asarray(aug.cutout(ones, KEY, size=4, inside=True))
    assert ((y == 0).sum(axis=(1, 2, 3)) == 4 * 4 * 3).all()
    y = np.asarray(aug.cutout(ones, KEY, size=4))
    for img in y:
        zero = img[..., 0] == 0
        assert (img == 0).all(-1)[zero].all()  # all channels filled together
        rows, cols = np.nonzero(zero)
        assert 0 < zero.sum() <= 16
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == zero.sum()  # a rectangle clipped by the border
    starts = {tuple(np.argwhere(img[..., 0] == 0)[0]) for img in y}
    assert len(starts) > 1


def test_gaussian_noise_statistics():
    x = jnp.zeros((16, 32, 32, 3))
    y = np.asarray(aug.gaussian_noise(x, KEY, std=0.2, mean=0.1))
    assert abs(y.mean() - 0.1) < 0.01 and abs(y.std() - 0.2) < 0.01
    assert (np.asarray(aug.gaussian_noise(x, KEY, std=0.5, clip=(0, 1))) >= 0).all()


def test_gaussian_blur():
    const = jnp.full((4, 16, 16, 3), 0.3)
    np.testing.assert_allclose(aug.gaussian_blur(const, KEY), 0.3, atol=1e-6)
    noisy = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
    blurred = np.asarray(aug.gaussian_blur(noisy, KEY, sigma=1.5))
    assert blurred.std() < 0.5 * noisy.std()
    np.testing.assert_allclose(blurred.mean(), noisy.mean(), atol=0.05)
    varied = np.asarray(aug.gaussian_blur(np.repeat(noisy[:1], 4, 0), KEY, sigma=(0.2, 3.0)))
    assert not np.allclose(varied[0], varied[1])  # per-example sigma
    with pytest.raises(ValueError, match="kernel_size"):
        aug.gaussian_blur(noisy, KEY, kernel_size=4)


def test_sobel():
    const = jnp.full((2, 8, 8, 3), 0.7)
    np.testing.assert_allclose(aug.sobel(const), 0, atol=1e-6)
    ramp = np.broadcast_to(np.arange(8.0, dtype=np.float32)[None, None, :, None], (2, 8, 8, 1))
    g = aug.sobel(ramp, output="gradients")
    assert g.shape == (2, 8, 8, 2)
    np.testing.assert_allclose(g[:, :, 1:-1, 0], 1.0, atol=1e-6)  # d/dx of a unit ramp
    np.testing.assert_allclose(g[..., 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(aug.sobel(ramp)[:, :, 1:-1], 1.0, atol=1e-6)
    assert aug.sobel(_images(), grayscale=True).shape == (6, 8, 8, 1)
    with pytest.raises(ValueError, match="`output`"):
        aug.sobel(ramp, output="angle")


def test_color_ops():
    x = _images()
    np.testing.assert_allclose(
        aug.color_jitter(x, KEY, brightness=0, contrast=0, saturation=0, hue=0), x, atol=1e-6
    )
    y = np.asarray(aug.color_jitter(x, KEY))
    assert y.min() >= 0 and y.max() <= 1 and not np.allclose(y, x)
    roundtrip = jax.jit(lambda im: aug.hsv_to_rgb(aug.rgb_to_hsv(im)))
    np.testing.assert_allclose(roundtrip(x), x, atol=1e-5)
    shifted = np.asarray(aug.color_jitter(x, KEY, brightness=0, contrast=0, saturation=0, hue=0.5))
    np.testing.assert_allclose(shifted.max(-1), np.asarray(x).max(-1), atol=1e-5)  # same value
    assert not np.allclose(shifted, x)
    gray = np.asarray(aug.color_drop(x, KEY, p=1.0))
    np.testing.assert_allclose(gray[..., 0], gray[..., 2])
    np.testing.assert_allclose(gray[..., 0], np.asarray(x) @ [0.299, 0.587, 0.114], atol=1e-6)
    with pytest.raises(ValueError, match="RGB"):
        aug.color_jitter(_images(c=1), KEY)


CONFIGS = {
    "random_crop": {"padding": 4},
    "inception_crop": {"size": 6},
    "horizontal_flip": {},
    "vertical_flip": {},
    "color_jitter": {},
    "color_drop": {"p": 0.5},
    "rotate": {"angle": 30},
    "rot90": {},
    "cutout": {"size": 4},
    "gaussian_noise": {"std": 0.1},
    "gaussian_blur": {"sigma": (0.5, 1.5)},
    "sobel": {"output": "gradients"},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_augmentation_jits_and_is_per_example(name):
    assert set(CONFIGS) == set(augmentation_names())
    # The ops compile themselves (static keyword arguments); test_augment_composer jits
    # them inside an outer jit. Same shapes and arguments as the tests above: cached.
    fn = get_augmentation(name, **CONFIGS[name])
    same = np.repeat(np.asarray(_images(n=1)), 6, axis=0)  # 6 copies of one image
    out = np.asarray(fn(same, KEY))
    assert np.isfinite(out).all()
    if name != "sobel":  # deterministic
        differs = [not np.allclose(out[0], out[i]) for i in range(1, 6)]
        assert any(differs), f"{name} gave every example the same result"
        assert not np.allclose(fn(same, jax.random.key(1)), out)


def test_augment_composer():
    x = _images()
    ops = [("random_crop", {"padding": 4}), "horizontal_flip", ("cutout", {"size": 4})]
    y = jax.jit(lambda b, k: augment(b, k, ops))(x, KEY)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, augment(x, KEY, ops), atol=1e-6)  # eager: three small jits
    assert get_augmentation("flip").func is aug.horizontal_flip
    with pytest.raises(ValueError, match="unknown augmentation `name`"):
        get_augmentation("mixup")
    with pytest.raises(TypeError, match="'sigma'"):
        get_augmentation("random_crop", sigma=1.0)
    with pytest.raises(ValueError, match=r"`ops\[0\]`"):
        augment(x, KEY, [42])
    with pytest.raises(TypeError, match="float"):
        aug.horizontal_flip(jnp.zeros((1, 2, 2, 1), jnp.uint8), KEY)


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


def test_which_augmentations_need_images_in_the_unit_range():
    from cnn_jax.data import needs_unit_range

    assert needs_unit_range("color_jitter", brightness=0.2)
    assert needs_unit_range("noise", clip=(0, 1)) and needs_unit_range(
        "gaussian_noise", clip=(0, 1)
    )
    assert not needs_unit_range("gaussian_noise", std=0.1)
    for name in ("flip", "random_crop", "cutout", "rot90"):
        assert not needs_unit_range(name)
