"""Tests for cnn_jax.data's batching, input pipelines, preprocessing and device prefetch."""

import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cnn_jax.data import (
    BatchIterator,
    data_sharding,
    input_pipeline,
    prefetch_to_device,
    preprocess,
)

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
        input_pipeline({"dataset": "mnist", "batch_size": 2, "normalization": "whiten"}, "train",
                       rng_seed=0, data={"image": np.zeros((4, 2, 2, 1), np.uint8)})  # fmt: skip


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
