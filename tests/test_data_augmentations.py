"""Tests for cnn_jax.data.augmentations: every op, the registry and ``augment``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.data import (
    augment,
    augmentation_names,
    get_augmentation,
)
from cnn_jax.data import augmentations as aug

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
    "pca_colour_noise": {"std": 0.1},
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


def test_which_augmentations_need_images_in_the_unit_range():
    from cnn_jax.data import needs_unit_range

    assert needs_unit_range("color_jitter", brightness=0.2)
    assert needs_unit_range("noise", clip=(0, 1)) and needs_unit_range(
        "gaussian_noise", clip=(0, 1)
    )
    assert not needs_unit_range("gaussian_noise", std=0.1)
    for name in ("flip", "random_crop", "cutout", "rot90"):
        assert not needs_unit_range(name)
