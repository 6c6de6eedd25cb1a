"""ImageNet's lazy ImageFolder pipeline (on a tiny fake copy) and the synthetic set."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnn_jax.data import DatasetNotFoundError, input_pipeline, load_dataset
from cnn_jax.data.imagenet import center_crop, random_resized_crop


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 5), ("val", 3)):
        for wnid in ("n015", "n002", "n100"):  # labels: the sorted order
            c = sorted(("n015", "n002", "n100")).index(wnid)
            folder = root / "imagenet2012" / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                h, w = rng.integers(40, 90, 2)
                pixels = np.full((h, w, 3), 60 * c + 20, np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.JPEG", quality=95)
            (folder / "notes.txt").write_text("not an image")
    return root


def _config(root, **kw):
    return {
        "dataset": "imagenet2012",
        "data_dir": str(root),
        "batch_size": 4,
        "dataset_options": {"image_size": 24, "num_workers": 2},
        **kw,
    }


def test_train_batches_are_deterministic_and_resumable(fake_imagenet):
    it = input_pipeline(_config(fake_imagenet), "train", rng_seed=3)
    assert it.steps_per_epoch == 15 // 4
    a = it.batch_at(5)
    b = input_pipeline(_config(fake_imagenet), "train", rng_seed=3).batch_at(5)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].shape == (4, 24, 24, 3) and a["image"].dtype == np.uint8
    # Labels are the sorted wnids; the fake images' grey level encodes the class.
    grey = a["image"].reshape(4, -1).mean(1)
    np.testing.assert_allclose(grey, 60 * a["label"] + 20, atol=3)
    # Another epoch draws other crops of the same images.
    c = it.batch_at(5 + it.steps_per_epoch)
    assert c["image"].shape == a["image"].shape


def test_eval_pads_with_a_mask(fake_imagenet):
    it = input_pipeline(_config(fake_imagenet, normalization="standardize"), "test", rng_seed=0)
    assert it.steps_per_epoch == 3
    last = it.batch_at(2)
    assert last["mask"].tolist() == [True, False, False, False]
    assert last["image"].dtype == np.float32
    batches = [it.batch_at(i) for i in range(3)]
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    assert sorted(labels.tolist()) == [0] * 3 + [1] * 3 + [2] * 3


@pytest.mark.parametrize("norm", ["channel_mean", "mean_image"])
def test_train_set_means_need_images_in_memory(fake_imagenet, norm):
    with pytest.raises(ValueError, match=rf"`config.normalization` \(='{norm}'\) needs"):
        input_pipeline(_config(fake_imagenet, normalization=norm), "test", rng_seed=0)


def test_random_resized_crop():
    image = Image.fromarray(np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3))
    a = random_resized_crop(image, 16, np.random.default_rng(1))
    b = random_resized_crop(image, 16, np.random.default_rng(1))
    assert a.size == (16, 16)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Scale 1 and ratio of the image itself: the whole image, resized.
    whole = random_resized_crop(image, 16, np.random.default_rng(0), scale=(1, 1),
                                ratio=(4 / 3, 4 / 3))  # fmt: skip
    np.testing.assert_array_equal(np.asarray(whole), np.asarray(image.resize((16, 16),
                                  Image.BILINEAR, box=(0, 0, 80, 60))))  # fmt: skip
    # An impossible aspect falls back to the central crop of the clamped ratio.
    tall = random_resized_crop(image, 8, np.random.default_rng(0), scale=(1, 1), ratio=(1, 1))
    np.testing.assert_array_equal(
        np.asarray(tall), np.asarray(image.resize((8, 8), Image.BILINEAR, box=(10, 0, 70, 60)))
    )


def test_center_crop():
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, 100:] = 255
    out = center_crop(Image.fromarray(pixels), 32, 40)
    assert out.size == (32, 32)
    # Resized to 40 x 80, the central 32 columns straddle the edge at column 40.
    row = np.asarray(out)[16, :, 0]
    assert row[:14].max() == 0 and row[-14:].min() == 255


def test_missing_imagenet_says_where(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"imagenet2012/train.*<wnid>/\*\.JPEG"):
        load_dataset("imagenet2012", "train", tmp_path)
    with pytest.raises(ValueError, match=r"`image_size` \(=0\)"):
        load_dataset("imagenet", "train", tmp_path, image_size=0)


def test_synthetic_is_learnable_and_deterministic():
    train = load_dataset("synthetic", "train", image_size=16, train_size=200)
    again = load_dataset("synthetic", "train", image_size=16, train_size=200)
    test = load_dataset("synthetic", "test", image_size=16)
    np.testing.assert_array_equal(train["image"], again["image"])
    assert train["image"].shape == (200, 16, 16, 3) and test["image"].shape == (128, 16, 16, 3)
    assert set(train["label"].tolist()) == set(range(10))
    # Nearest class mean classifies the test set well above chance.
    x, y = train["image"].reshape(200, -1).astype(float), train["label"]
    means = np.stack([x[y == k].mean(0) for k in range(10)])
    xt = test["image"].reshape(128, -1).astype(float)
    pred = np.argmin(((xt[:, None] - means[None]) ** 2).sum(-1), 1)
    assert np.mean(pred == test["label"]) > 0.8
    with pytest.raises(ValueError, match=r"`train_size` \(=-1\)"):
        load_dataset("synthetic", "train", train_size=-1)
