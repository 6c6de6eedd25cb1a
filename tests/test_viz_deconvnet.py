"""Deconvnet (Zeiler & Fergus 2014): numpy hand-computed paths, model stacks, errors."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.layers import BatchNorm
from cnn_jax.layers.norm import LocalResponseNorm
from cnn_jax.models import VGG, VGG11, AlexNet, AlexNetPaper, CNNMnist, LeNet5, LeNet5Modern, ZFNet
from cnn_jax.viz import (
    Conv,
    MaxPool,
    ReLU,
    crop,
    deconv_stack,
    forward,
    project,
    receptive_box,
    select,
    tap,
    top_projections,
)


def _np_conv_valid(x, w, b, stride):
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, co))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w) + b
    return out


def _np_conv_transposed(y, w, in_shape, stride):
    """The transposed filters, by hand: each output unit spreads its filter back."""
    out = np.zeros(in_shape)
    kh, kw = w.shape[:2]
    for i in range(y.shape[1]):
        for j in range(y.shape[2]):
            out[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :] += np.einsum(
                "no,hwco->nhwc", y[:, i, j, :], w
            )
    return out


def _np_pool_switches(a, k):
    n, h, w, c = a.shape
    oh, ow = h // k, w // k
    vals = np.zeros((n, oh, ow, c))
    where = np.zeros((n, oh, ow, c, 2), int)
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    win = a[b, i * k : i * k + k, j * k : j * k + k, ch]
                    r, s = np.unravel_index(np.argmax(win), win.shape)  # first maximum
                    vals[b, i, j, ch] = win[r, s]
                    where[b, i, j, ch] = (i * k + r, j * k + s)
    return vals, where


@pytest.mark.parametrize("stride", [1, 2])
def test_single_conv_relu_pool_projection_equals_hand_computed_path(rng, stride):
    x = rng.normal(size=(2, 13, 13, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    b = rng.normal(size=(4,)).astype(np.float32)
    layers = [Conv("conv", jnp.asarray(w), jnp.asarray(b), stride, "VALID"), ReLU("relu")]
    layers.append(MaxPool("pool", 2))
    got = np.asarray(project(layers, jnp.asarray(x), "pool", channel=2))

    # By hand: forward, keep the strongest pooled unit of channel 2, unpool it to its
    # switch, rectify, transposed filters (no bias).
    a = np.maximum(_np_conv_valid(x.astype(np.float64), w, b, stride), 0)
    vals, where = _np_pool_switches(a, 2)
    unpooled = np.zeros_like(a)
    for n in range(2):
        i, j = np.unravel_index(np.argmax(vals[n, :, :, 2]), vals.shape[1:3])
        r, s = where[n, i, j, 2]
        unpooled[n, r, s, 2] = vals[n, i, j, 2]
    want = _np_conv_transposed(np.maximum(unpooled, 0), w, x.shape, stride)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_whole_map_projection_and_explicit_signal(rng):
    x = jnp.asarray(rng.normal(size=(1, 8, 8, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 3)), jnp.float32)
    layers = [Conv("c", w, None, 1, 1), ReLU("r"), MaxPool("p", 2)]
    out = forward(layers, x)["p"]
    by_map = project(layers, x, "p", channel=1, keep="map")
    sig = np.zeros(out.shape, np.float32)
    sig[..., 1] = np.asarray(out[..., 1])
    np.testing.assert_allclose(by_map, project(layers, x, "p", signal=sig), rtol=1e-6)
    # Signal-linear: projecting two maps is the sum of projecting each.
    s2 = np.zeros_like(sig)
    s2[..., 0] = np.asarray(out[..., 0])
    both = project(layers, x, "p", signal=sig + s2)
    each = project(layers, x, "p", signal=sig) + project(layers, x, "p", signal=s2)
    np.testing.assert_allclose(both, each, rtol=1e-5, atol=1e-6)


def test_select_keeps_the_first_maximum_of_one_map():
    a = jnp.zeros((1, 2, 2, 2)).at[0, 0, 1, 0].set(3.0).at[0, 1, 0, 0].set(3.0)
    s = np.asarray(select(a.at[0, 1, 1, 1].set(9.0), np.int64(0)))
    assert s[0, 0, 1, 0] == 3.0 and np.count_nonzero(s) == 1


@jax.custom_vjp
def _deconv_relu(x):
    return jax.nn.relu(x)


_deconv_relu.defvjp(lambda x: (jax.nn.relu(x), None), lambda _, g: (jax.nn.relu(g),))


class _PassThroughLRN(LocalResponseNorm):
    """The LRN's value with the identity as its derivative (the deconvnet's rule)."""

    def __call__(self, x):
        return x + jax.lax.stop_gradient(super().__call__(x) - x)


def _perturbed_stats(v):
    if "batch_stats" not in v:
        return v
    key = jax.random.key(3)
    stats = jax.tree.map(lambda a: a + jax.random.uniform(key, a.shape, a.dtype), v["batch_stats"])
    return {**v, "batch_stats": stats}


SMALL = (4, "M", 8, 8, "M")  # VGG's layer pattern at a test size
MODELS = {
    "vgg": (lambda: VGG(SMALL, num_classes=3), (2, 8, 8, 3), "relu2_1"),
    "vgg_bn": (lambda: VGG(SMALL, batch_norm=True, num_classes=3), (2, 8, 8, 3), "pool2"),
    "cnn_mnist": (lambda: CNNMnist(widths=(4, 8), hidden=8), (2, 12, 12, 1), "block1"),
    "lenet5_modern": (LeNet5Modern, (2, 16, 16, 1), "s4"),
    # Overlapping 3x3 stride-2 pooling: unpooling adds the values of shared maxima.
    "alexnet": pytest.param(
        (lambda: AlexNet(num_classes=3), (1, 63, 63, 3), "pool2"), marks=pytest.mark.slow
    ),
    # LRN passed through; ceil-mode pooling; strided convolutions with padding 1 and 0.
    "zfnet": pytest.param(
        (lambda: ZFNet(num_classes=3), (1, 63, 63, 3), "conv3"), marks=pytest.mark.slow
    ),
    # Two towers: grouped convolutions and LRN within each half of the maps.
    "alexnet_paper": pytest.param(
        (lambda: AlexNetPaper(num_classes=3), (1, 63, 63, 3), "conv5"), marks=pytest.mark.slow
    ),
}


@pytest.mark.parametrize("case", list(MODELS.values()), ids=list(MODELS))
def test_stack_matches_model_taps_and_a_modified_backprop(case):
    """The stack computes the model's activations; its projection equals the VJP of the
    model itself with ReLU's backward replaced by a ReLU of the signal (the deconvnet
    rule; max pooling's and convolution's VJPs are unpooling and transposed filters)."""
    make, shape, layer = case
    model = make()
    x = jax.random.normal(jax.random.key(1), shape)
    v = _perturbed_stats(model.init(jax.random.key(0), x))
    layers = deconv_stack(model, v)
    trace = forward(layers, x)
    taps = tap(model, v, x, [lyr.name for lyr in layers if not isinstance(lyr, ReLU)])
    for k, val in taps.items():
        np.testing.assert_allclose(trace[k], val, rtol=1e-4, atol=1e-4 * float(jnp.abs(val).max()))
    channel = int(jnp.argmax(jnp.sum(trace[layer], axis=(0, 1, 2))))
    got = project(layers, x, layer, channel=channel)

    if isinstance(model, LeNet5Modern):  # no `act` field: swap nn.relu inside the module
        return _check_lenet_by_vjp(model, v, x, layer, channel, got)
    deconv_model = model.clone(act=_deconv_relu)
    if isinstance(model, (ZFNet, AlexNetPaper)):
        deconv_model = model.clone(act=_deconv_relu, norm=_PassThroughLRN)
    f = lambda xx: tap(deconv_model, v, xx, layer)[layer]  # noqa: E731
    out, vjp = jax.vjp(f, x)
    (want,) = vjp(select(out, channel))
    assert float(jnp.abs(want).max()) > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


def _check_lenet_by_vjp(model, v, x, layer, channel, got):
    orig = nn.relu
    try:
        nn.relu = _deconv_relu  # LeNet5Modern calls nn.relu by attribute
        f = lambda xx: tap(model, v, xx, layer)[layer]  # noqa: E731
        out, vjp = jax.vjp(f, x)
        (want,) = vjp(select(out, channel))
    finally:
        nn.relu = orig
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


def test_receptive_box_is_the_support_of_a_projection():
    """With positive filters the projection of one conv unit covers exactly its field."""
    layers = [Conv("c1", jnp.ones((3, 3, 1, 2)), None, 1, "VALID"), ReLU("r1"), MaxPool("p1", 2)]
    layers += [Conv("c2", jnp.ones((3, 3, 2, 2)), None, 2, "VALID"), ReLU("r2")]
    x = jnp.ones((1, 20, 20, 1))
    sig = jnp.zeros((1, 18, 18, 2)).at[0, 4, 7, 0].set(1.0)
    rec = np.asarray(project(layers[:1], x, "c1", signal=sig))
    rows, cols = np.nonzero(rec[0, ..., 0])
    support = (rows.min(), cols.min(), rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    assert support == receptive_box(layers, "c1", 4, 7, (20, 20)) == (4, 7, 3, 3)
    # conv 3 -> pool 2 -> conv 3 stride 2: field 3 + 1 + 2 * 2 = 8, jump 4.
    assert receptive_box(layers, "r2", 1, 2, (20, 20)) == (4, 8, 8, 8)
    with pytest.raises(ValueError, match="`layer` \\(='x'\\)"):
        receptive_box(layers, "x", 0, 0, (20, 20))


def test_errors_name_the_argument():
    layers = [Conv("c", jnp.ones((3, 3, 1, 2))), ReLU("r")]
    x = jnp.ones((1, 8, 8, 1))
    with pytest.raises(ValueError, match="`layer` \\(='nope'\\)"):
        project(layers, x, "nope", channel=0)
    with pytest.raises(ValueError, match="`channel` \\(=5\\)"):
        project(layers, x, "r", channel=5)
    with pytest.raises(ValueError, match="exactly one of `channel`"):
        project(layers, x, "r")
    with pytest.raises(ValueError, match="`signal` shape"):
        project(layers, x, "r", signal=np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match="`keep` \\(='all'\\)"):
        project(layers, x, "r", channel=0, keep="all")
    with pytest.raises(TypeError, match="`layers\\[1\\]`"):
        forward([layers[0], "relu"], x)
    with pytest.raises(ValueError, match="names must be unique"):
        forward([ReLU("a"), ReLU("a")], x)
    with pytest.raises(ValueError, match="`x` must be"):
        forward(layers, jnp.ones((8, 8, 1)))
    lenet = LeNet5()
    v = lenet.init(jax.random.key(0), jnp.ones((1, 32, 32, 1)))
    with pytest.raises(ValueError, match="LeNet5\\) has no deconvnet stack"):
        deconv_stack(lenet, v)
    tanh_vgg = VGG11(num_classes=10, act=nn.tanh)
    with pytest.raises(ValueError, match="needs ReLU"):
        deconv_stack(tanh_vgg, {"params": {}})
    with pytest.raises(ValueError, match="ZFNet\\.norm must be LocalResponseNorm"):
        deconv_stack(ZFNet(norm=BatchNorm), {"params": {}})


def test_top_projections_patches_boxes_and_projections(rng):
    """Each entry: the k-th strongest unit, its image cut to its field, and the
    projection of that one activation, which lies entirely inside the field."""
    w1 = jnp.asarray(rng.normal(size=(3, 3, 1, 4)), jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(3, 3, 4, 3)), jnp.float32)
    layers = [Conv("c1", w1, None, 1, 1), ReLU("r1"), MaxPool("p1", 2)]
    layers += [Conv("c2", w2, None, 1, "VALID"), ReLU("r2"), MaxPool("p2", 2)]
    images = rng.normal(size=(5, 12, 12, 1)).astype(np.float32)
    tp = top_projections(layers, images, "p2", [2, 0], k=3, batch_size=2)
    acts = np.asarray(forward(layers, images)["p2"])
    for ci, ch in enumerate([2, 0]):
        values = np.sort(acts[..., ch].ravel())[::-1][:3]
        np.testing.assert_allclose(tp.top[ci, :, 3], values, rtol=1e-6)
        for j in range(3):
            img, r, c = tp.top[ci, j, :3].astype(int)
            box = tuple(tp.boxes[ci, j])
            assert box == receptive_box(layers, "p2", r, c, (12, 12))
            assert box[2:] == (10, 10)  # 3, pool 2 -> 4, 3 -> 8, pool 2 -> 10
            np.testing.assert_array_equal(tp.patches[ci, j], crop(images[img], box, images.min()))
            out = forward(layers, images[img : img + 1])["p2"]
            sig = jnp.zeros(out.shape).at[0, r, c, ch].set(out[0, r, c, ch])
            full = np.asarray(project(layers, images[img : img + 1], "p2", signal=sig))[0]
            np.testing.assert_allclose(tp.projections[ci, j], crop(full, box), rtol=1e-5, atol=1e-6)
            assert np.abs(tp.projections[ci, j]).sum() == pytest.approx(
                np.abs(full).sum(), rel=1e-5
            )
