"""Segmentation data, losses and metrics, and training through the loop.

The losses against PyTorch's ``cross_entropy`` (ignore index, class weights) and a
numpy Dice; the confusion-matrix metrics against a hand-computed matrix and equal on 1
and 8 devices (sharded ``jit`` and ``pmap``) through the evaluation step; the
generator's determinism and label maps; a runlocal training whose mIoU rises.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import data, models
from cnn_jax.data import resolve_data_dir
from cnn_jax.data.digit_segmentation import check_label_map, make_digit_segmentation
from cnn_jax.train import build, steps, train_and_evaluate
from cnn_jax.train.losses import get_loss
from cnn_jax.train.losses_dense import dice_loss, pixel_cross_entropy, reconstruction_mse
from cnn_jax.train.metrics_dense import confusion_matrix, segmentation_scores
from cnn_jax.train.parallel import Parallel
from experiments.configs import dilated_digits, fcn_digits, segnet_digits, unet_digits
from tests.conftest import torch_or_skip

needs_mnist = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)


def _logits_labels(seed=0, n=2, h=5, w=6, k=4, ignore=255):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, h, w, k)).astype(np.float32)
    labels = rng.integers(0, k, (n, h, w)).astype(np.int32)
    labels[rng.random((n, h, w)) < 0.2] = ignore
    return logits, labels


def test_pixel_cross_entropy_matches_torch_with_ignore_and_weights():
    torch = torch_or_skip()
    logits, labels = _logits_labels()
    weights = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
    t_logits = torch.tensor(logits).permute(0, 3, 1, 2)
    t_labels = torch.tensor(labels).long()
    for cw in (None, weights):
        ref = torch.nn.functional.cross_entropy(
            t_logits,
            t_labels,
            weight=None if cw is None else torch.tensor(cw),
            ignore_index=255,
        )
        got = pixel_cross_entropy(jnp.asarray(logits), labels, class_weights=cw, reduction="mean")
        np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    per_pixel = torch.nn.functional.cross_entropy(
        t_logits, t_labels, ignore_index=255, reduction="none"
    ).numpy()
    got = pixel_cross_entropy(jnp.asarray(logits), labels, reduction="none")
    np.testing.assert_allclose(np.asarray(got), per_pixel, rtol=1e-5, atol=1e-6)
    per_example = per_pixel.sum((1, 2)) / (labels != 255).sum((1, 2))
    got = pixel_cross_entropy(jnp.asarray(logits), labels)
    np.testing.assert_allclose(np.asarray(got), per_example, rtol=1e-5)
    # Gradient: zero at ignored pixels, softmax - onehot elsewhere (scaled).
    g = jax.grad(lambda x: pixel_cross_entropy(x, labels, reduction="mean"))(jnp.asarray(logits))
    assert np.all(np.asarray(g)[labels == 255] == 0)
    t = t_logits.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(t, t_labels, ignore_index=255).backward()
    np.testing.assert_allclose(
        np.asarray(g), t.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-7
    )


def test_dice_loss_matches_numpy():
    logits, labels = _logits_labels(1)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    valid = labels != 255
    ref = []
    for n in range(2):
        dices = []
        for k in range(4):
            pk = p[n, ..., k][valid[n]]
            gk = (labels[n][valid[n]] == k).astype(np.float64)
            dices.append((2 * (pk * gk).sum() + 1) / (pk.sum() + gk.sum() + 1))
        ref.append(1 - np.mean(dices))
    np.testing.assert_allclose(np.asarray(dice_loss(jnp.asarray(logits), labels)), ref, rtol=1e-5)
    perfect = jnp.asarray(np.eye(4)[np.where(valid, labels, 0)] * 50.0)
    assert float(dice_loss(perfect, labels).max()) < 1e-3


def test_loss_shape_and_label_errors():
    logits, labels = _logits_labels()
    with pytest.raises(ValueError, match=r"`labels` shape \(2, 5, 5\) must be the logits'"):
        pixel_cross_entropy(jnp.asarray(logits), labels[:, :, :5])
    with pytest.raises(ValueError, match="class_weights"):
        pixel_cross_entropy(jnp.asarray(logits), labels, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="reduction"):
        pixel_cross_entropy(jnp.asarray(logits), labels, reduction="sum")
    with pytest.raises(ValueError, match="reconstruction's shape"):
        reconstruction_mse(jnp.zeros((1, 4, 4, 1)), {}, {"image": jnp.zeros((1, 4, 5, 1))})
    with pytest.raises(ValueError, match=r"`labels` holds class 7 outside \[0, 4\)"):
        confusion_matrix(jnp.zeros((1, 2, 2), jnp.int32), np.full((1, 2, 2), 7), 4)
    with pytest.raises(ValueError, match=r"`predictions` shape"):
        confusion_matrix(jnp.zeros((1, 2, 3), jnp.int32), np.zeros((1, 2, 2), np.int32), 4)
    image = np.zeros((2, 4, 4, 1), np.uint8)
    with pytest.raises(ValueError, match=r"`label` holds class 11 \(example 1\)"):
        check_label_map(
            image, np.concatenate([np.zeros((1, 4, 4)), np.full((1, 4, 4), 11)]).astype(int), 11
        )
    with pytest.raises(ValueError, match=r"`label` shape \(2, 4, 3\) must be"):
        check_label_map(image, np.zeros((2, 4, 3), int), 11)
    check_label_map(image, np.full((2, 4, 4), 255), 11, ignore_label=255)


def test_scores_against_a_hand_computed_confusion_matrix():
    # 1 image, 3 classes; labels and predictions on 2x4 pixels, one pixel ignored.
    labels = np.array([[[0, 0, 1, 1], [2, 2, 255, 0]]])
    preds = np.array([[[0, 1, 1, 1], [2, 0, 2, 0]]])
    cm = np.asarray(confusion_matrix(jnp.asarray(preds), jnp.asarray(labels), 3))
    hand = np.array([[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_array_equal(cm, hand)
    s = segmentation_scores(cm)
    assert s["pixel_accuracy"] == pytest.approx(5 / 7)
    ious = [2 / (3 + 3 - 2), 2 / (2 + 3 - 2), 1 / (2 + 1 - 1)]
    assert [s[f"iou/{k}"] for k in range(3)] == pytest.approx(ious)
    assert s["miou"] == pytest.approx(np.mean(ious))
    assert s["mean_accuracy"] == pytest.approx(np.mean([2 / 3, 1.0, 1 / 2]))
    # A class neither present nor predicted has no IoU and is left out of the mean.
    s4 = segmentation_scores(np.pad(hand, ((0, 1), (0, 1))))
    assert np.isnan(s4["iou/3"]) and s4["miou"] == pytest.approx(np.mean(ious))
    with pytest.raises(ValueError, match="square"):
        segmentation_scores(np.zeros((2, 3)))


def test_eval_step_confusion_equal_on_1_and_8_devices():
    assert jax.device_count() == 8
    c = unet_digits.get_config("runlocal")
    c.model_kwargs.features = (4, 8)
    n, size, k = 16, 16, 11
    state, _ = build.build_state(c, k, (size, size, 1), 1, 1, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (n, size, size, 1)).astype(np.uint8),
        "label": rng.integers(0, k, (n, size, size)).astype(np.int32),
        "mask": np.r_[np.ones(13), np.zeros(3)].astype(np.float32),  # 3 padding examples
    }
    batch["label"][0, :4] = 255
    loss = "pixel_cross_entropy"
    one = jax.jit(lambda s, b: steps.eval_step(s, b, loss=loss))(state, batch)
    jit8, pmap8 = Parallel("jit"), Parallel("pmap")  # as the loop places them
    eight = jit8.compile_eval(functools.partial(steps.eval_step, loss=loss))(
        jit8.replicate(state), jit8.batch(batch)
    )
    assert len(eight["confusion"].sharding.device_set) == 8
    pmapped = pmap8.host(
        pmap8.compile_eval(functools.partial(steps.eval_step, loss=loss))(
            pmap8.replicate(state), pmap8.batch(batch)
        )
    )
    # The reference: numpy counts over the 13 real examples, ignoring label 255.
    logits, _ = state.apply_fn(state.variables(), batch["image"].astype(np.float32) / 255)
    pred = np.asarray(jnp.argmax(logits, -1))[:13]
    lab = batch["label"][:13]
    ref = np.zeros((k, k), np.int64)
    np.add.at(ref, (lab[lab != 255], pred[lab != 255]), 1)
    for out in (one, eight, pmapped):
        np.testing.assert_array_equal(np.asarray(out["confusion"]), ref)
        assert float(out["count"]) == 13
    np.testing.assert_allclose(float(eight["loss"]), float(one["loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(pmapped["loss"]), float(one["loss"]), rtol=1e-5)


@needs_mnist
def test_generator_is_deterministic_and_labels_follow_the_digits(tmp_path):
    mnist = data.load_dataset("mnist", "test", cache_dir=tmp_path)
    a = make_digit_segmentation(mnist["image"], mnist["label"], 20, seed=3, canvas=48)
    b = make_digit_segmentation(mnist["image"], mnist["label"], 20, seed=3, canvas=48)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["image"].shape == (20, 48, 48, 1) and a["label"].shape == (20, 48, 48)
    check_label_map(a["image"], a["label"], 11)
    for i in range(20):  # the classes present are exactly the digits placed (if visible)
        placed = set((mnist["label"][a["source"][i, : a["count"][i]]] + 1).tolist())
        present = set(np.unique(a["label"][i]).tolist()) - {0}
        assert present <= placed and present
        fg = a["label"][i] > 0
        assert np.all(a["image"][i, ..., 0][fg] >= 96) and np.all(a["image"][i, ..., 0][~fg] < 96)
    with pytest.raises(ValueError, match="max_digits"):
        make_digit_segmentation(mnist["image"], mnist["label"], 2, max_digits=0)
    with pytest.raises(ValueError, match="canvas"):
        make_digit_segmentation(mnist["image"], mnist["label"], 2, canvas=20)
    info = data.get_dataset_info("digit_segmentation")
    assert info.num_classes == 11 and info.class_names[0] == "background"


def test_configs_build():
    for mod in (unet_digits, segnet_digits, dilated_digits, fcn_digits):
        for arg in (None, "cpu", "runlocal"):
            c = mod.get_config(arg)
            assert c.dataset == "digit_segmentation" and c.loss == "pixel_cross_entropy"
            assert c.model in models.MODELS
        with pytest.raises(ValueError, match="variant"):
            mod.get_config("nope")
    assert get_loss("pixel_cross_entropy").summarize is not None


@needs_mnist
def test_runlocal_trains_and_miou_rises(tmp_path):
    c = dilated_digits.get_config("runlocal")
    c.model_kwargs.frontend = (16, 16)
    c.num_train_steps = 30
    c.eval_every_steps = 30
    c.log_every_steps = 10
    c.optim.learning_rate = 3e-3
    c.dataset_options.train_size = 128
    c.dataset_options.canvas = 32
    c.cache_dir = str(tmp_path / "cache")
    before = train_and_evaluate(_steps(c, 1), str(tmp_path / "a"))
    after = train_and_evaluate(c, str(tmp_path / "b"))
    keys = ("test_miou", "test_iou/0", "test_pixel_accuracy")
    got = {k: (before[k], after[k]) for k in keys}
    # In 30 steps the net learns where the digits are (the background class), not yet
    # which digit each is: the mIoU rises through the background's IoU.
    assert after["test_miou"] > before["test_miou"] + 0.02, got
    assert after["test_iou/0"] > before["test_iou/0"] + 0.2, got
    assert after["test_pixel_accuracy"] > before["test_pixel_accuracy"] + 0.2, got
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert "iou/10" in [r for r in rows if r["split"] == "test"][-1]


def _steps(c, n):
    c = c.copy_and_resolve_references()
    c.num_train_steps = n
    c.eval_every_steps = n
    c.log_every_steps = n
    c.checkpoint_every_steps = n
    return c


def test_tfds_segmentation_records_and_catalog(tmp_path):
    from cnn_jax.data import segmentation_tfds as st
    from cnn_jax.data.datasets import _check_labels

    rng = np.random.default_rng(0)
    trimap = np.full((6, 8, 1), 2, np.uint8)  # background
    trimap[1:5, 2:6] = 1  # the pet
    trimap[1, 2:6] = 3  # its uncertain border
    records = [
        {"image": rng.integers(0, 256, (6, 8, 3)).astype(np.uint8), "segmentation_mask": trimap}
    ]
    out = st.records_to_arrays(records, st.PETS_SOURCE, 12)
    assert out["image"].shape == (1, 12, 12, 3) and out["image"].dtype == np.uint8
    assert set(np.unique(out["label"])) == {0, 1, 255}
    assert out["label"][0, 0, 0] == 0 and out["label"][0, 6, 6] == 1
    with pytest.raises(ValueError, match="mask's shape"):
        st.records_to_arrays(
            [{"image": records[0]["image"], "segmentation_mask": trimap[:5]}], st.PETS_SOURCE, 4
        )
    info = data.get_dataset_info("oxford_iiit_pet_seg")
    _check_labels(info, "train", out)  # the ignore label passes the catalog's label check
    bad = {"label": np.where(out["label"] == 1, 2, out["label"])}
    with pytest.raises(ValueError, match=r"label 2 \(example 0"):
        _check_labels(info, "train", bad)
    with pytest.raises(data.DatasetNotFoundError, match="source='tfds'"):
        data.load_dataset("oxford_iiit_pet_seg", "train", cache_dir=tmp_path)
