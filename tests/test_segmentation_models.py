"""Dense-prediction models: U-Net, SegNet, FCN, the context module, the conv autoencoder.

Parameter counts against networks of the papers' layouts built in PyTorch (on the
``meta`` device: no memory) and the papers' numbers; output shapes for odd and even
sizes; the unpooling's placement; the identity initialization; the receptive field of
the context module through ``receptive_field`` and through the model's Jacobian; the
errors for input sizes a model cannot take.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import models, ops
from cnn_jax.models.context_net import CONTEXT_DILATIONS, ContextModule, context_layers
from cnn_jax.models.fcn import bilinear_kernel
from cnn_jax.models.unet import unet_output_size, unet_valid_sizes
from tests.conftest import torch_or_skip
from tests.model_helpers import count


def _shapes(model, shape):
    x = jnp.zeros(shape, jnp.float32)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    (out, f), v = jax.eval_shape(lambda: model.init_with_output(rngs, x))
    return v, out.shape, {k: s.shape for k, s in f.items()}


def _torch_count(build):
    torch = torch_or_skip()
    with torch.device("meta"):
        net = build(torch.nn)
    return sum(p.numel() for p in net.parameters())


def _torch_vgg(nn, stages, c_in, bn):
    layers = []
    for widths in stages:
        for w in widths:
            layers.append(nn.Conv2d(c_in, w, 3, padding=1, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(w))
            c_in = w
    return nn.Sequential(*layers)


def test_unet_paper_count_and_572_to_388():
    def build(nn):  # the paper's Figure 1: 1 channel in, 2 classes out
        feats, mods, c = (64, 128, 256, 512, 1024), [], 1
        for f in feats:
            mods += [nn.Conv2d(c, f, 3), nn.Conv2d(f, f, 3)]
            c = f
        for f in reversed(feats[:-1]):
            mods += [nn.ConvTranspose2d(c, f, 2, 2), nn.Conv2d(2 * f, f, 3), nn.Conv2d(f, f, 3)]
            c = f
        return nn.ModuleList([*mods, nn.Conv2d(64, 2, 1)])

    v, out, f = _shapes(models.UNet(num_classes=2), (1, 572, 572, 1))
    assert out == (1, 388, 388, 2)  # the paper's tile sizes
    assert f["bottom"] == (1, 28, 28, 1024)  # 32x32 -> 28x28 at the bottom, as in Fig. 1
    assert count(v["params"]) == 31_030_658 == _torch_count(build)


def test_segnet_vgg16_encoder_and_count():
    def build(nn):
        enc = _torch_vgg(nn, models.segnet.SEGNET_VGG16_STAGES, 3, True)
        dec_stages = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))
        dec = _torch_vgg(nn, dec_stages, 512, True)
        return nn.ModuleList([enc, dec, nn.Conv2d(64, 11, 3, padding=1)])

    v, out, f = _shapes(models.SegNet(num_classes=11), (1, 360, 480, 3))  # CamVid
    assert out == (1, 360, 480, 11)
    assert f["indices5"] == (1, 11, 15, 512)
    enc = {k: p for k, p in v["params"].items() if k.startswith("enc")}
    # VGG-16's 14,714,688 conv parameters, its 4,224 biases replaced by BN's scale and shift.
    assert count(enc) == 14_714_688 + 4224
    assert count(v["params"]) == 29_441_419 == _torch_count(build)


def test_fcn_vgg16_counts():
    def build(nn, skips):
        mods = [_torch_vgg(nn, models.segnet.SEGNET_VGG16_STAGES, 3, False)]
        mods += [nn.Conv2d(512, 4096, 7), nn.Conv2d(4096, 4096, 1), nn.Conv2d(4096, 21, 1)]
        for c in (512, 256)[:skips]:  # score_pool4, score_pool3 and their 2x upscores
            mods += [nn.Conv2d(c, 21, 1), nn.ConvTranspose2d(21, 21, 4, 2, bias=False)]
        k = {0: 64, 1: 32, 2: 16}[skips]
        mods.append(nn.ConvTranspose2d(21, 21, k, k // 2, bias=False))
        return nn.ModuleList(mods)

    for skips, cls in enumerate((models.FCN32s, models.FCN16s, models.FCN8s)):
        v, out, _ = _shapes(cls(num_classes=21), (1, 224, 224, 3))
        assert out == (1, 224, 224, 21)
        expected = _torch_count(lambda nn, s=skips: build(nn, s))
        assert count(v["params"]) == expected
        head = {k: p for k, p in v["params"].items() if not k.startswith(("upscore", "score_p"))}
        assert count(head) == 134_346_581  # the paper's "134M" for FCN-VGG16 (Table 1)
    assert expected == 134_489_759  # the Caffe FCN-8s, upsampling kernels included


def test_bilinear_kernel_upsamples_bilinearly():
    k = bilinear_kernel(2, 1)
    v = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(k[:, :, 0, 0], np.outer(v, v))
    assert bilinear_kernel(3, 2).shape == (5, 5, 2, 2) and bilinear_kernel(3, 2)[2, 2, 0, 1] == 0
    ones = ops.conv_transpose(
        jnp.ones((1, 4, 4, 1)), jnp.asarray(k), strides=2, padding=((1, 1), (1, 1))
    )
    np.testing.assert_allclose(np.asarray(ones)[0, 1:-1, 1:-1, 0], 1.0, atol=1e-6)


def test_context_module_count_identity_init_and_receptive_field():
    c = 21
    m = ContextModule()
    x = jnp.asarray(np.random.default_rng(0).random((1, 80, 80, c)), jnp.float32)
    v = m.init(jax.random.key(0), x)
    weights = sum(p["kernel"].size for p in v["params"].values())
    assert weights == 64 * c * c and count(v["params"]) == 64 * c * c + 8 * c  # the paper's 64C^2
    np.testing.assert_array_equal(np.asarray(m.apply(v, x)), np.asarray(x))  # identity map
    # Receptive field: 3, 5, 9, 17, 33, 65, 67, 67 (exponential in the depth).
    layers = context_layers()
    sizes = [ops.receptive_field(layers[: i + 1]).size[0] for i in range(len(layers))]
    assert sizes == [3, 5, 9, 17, 33, 65, 67, 67]
    # ...and the same through the Jacobian of a randomly initialized module.
    mr = ContextModule(identity_init=False)
    vr = mr.init(jax.random.key(1), x)
    vr = jax.tree.map(jnp.abs, vr)  # positive weights: no cancellation, ReLUs stay on
    g = jax.grad(lambda x: mr.apply(vr, x)[0, 40, 40, 0])(x)
    rows = np.flatnonzero(np.abs(np.asarray(g)[0]).sum(axis=(1, 2)))
    assert rows.max() - rows.min() + 1 == 67
    assert tuple(CONTEXT_DILATIONS) == (1, 1, 2, 4, 8, 16, 1)


def test_dilated_net_starts_as_its_front_end():
    m = models.DilatedNet(num_classes=5, frontend=(4, 8), num_pools=1)
    x = jnp.asarray(np.random.default_rng(0).random((2, 16, 18, 1)), jnp.float32)
    v = m.init(jax.random.key(0), x)
    out, f = m.apply(v, x)
    assert out.shape == (2, 16, 18, 5)
    relu_scores = jax.nn.relu(f["frontend_scores"])
    ctx = ContextModule().apply({"params": v["params"]["context"]}, relu_scores)
    np.testing.assert_allclose(ctx, relu_scores, atol=1e-6)


@pytest.mark.parametrize("size", [(33, 47), (32, 48)])
def test_segnet_odd_and_even_sizes_and_unpool_placement(size):
    m = models.SegNet(num_classes=3, stages=((4,), (8,)), norm=None)
    _, out, f = _shapes(m, (2, *size, 1))
    assert out == (2, *size, 3)
    assert f["encoder1"] == (2, size[0] // 2, size[1] // 2, 4)
    # The decoder's unpooling puts each maximum back where the encoder took it.
    x = np.random.default_rng(1).standard_normal((1, *size, 2)).astype(np.float32)
    values, idx = ops.max_pool_with_indices(jnp.asarray(x), 2)
    un = np.asarray(ops.max_unpool(values, idx, size))
    expect = np.zeros_like(x)
    for i in range(size[0] // 2):
        for j in range(size[1] // 2):
            for c in range(2):
                win = x[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, c]
                a, b = np.unravel_index(np.argmax(win), (2, 2))
                expect[0, 2 * i + a, 2 * j + b, c] = win[a, b]
    np.testing.assert_array_equal(un, expect)


def test_unet_sizes_and_errors():
    assert unet_output_size(572) == 388 and unet_output_size(570) is None
    assert unet_valid_sizes(570) == [556, 572]
    _, out, _ = _shapes(models.UNet(num_classes=3, features=(4, 8)), (1, 68, 66, 1))
    assert out == (1, 52, 50, 3)  # 68 -> 64 -> 32 -> 28 -> (up) 56 -> 52
    _, out, _ = _shapes(
        models.UNet(num_classes=3, features=(4, 8, 16), padding="SAME"), (1, 64, 68, 1)
    )
    assert out == (1, 64, 68, 3)
    with pytest.raises(ValueError, match=r"height.*got 570.*nearest valid sizes: \[556, 572\]"):
        _shapes(models.UNet(num_classes=2), (1, 570, 572, 1))
    with pytest.raises(ValueError, match=r"width divisible by 4, got 65.*\[64, 68\]"):
        _shapes(models.UNet(num_classes=2, features=(4, 8, 16), padding="SAME"), (1, 64, 65, 1))
    with pytest.raises(ValueError, match="padding"):
        models.UNet(padding="valid")


def test_fcn_dilated_autoencoder_size_errors_and_attributes():
    with pytest.raises(ValueError, match=r"height divisible by 32, got 100.*\[96, 128\]"):
        _shapes(models.FCN8s(num_classes=2), (1, 100, 96, 3))
    with pytest.raises(ValueError, match=r"divisible by 4, got 63"):
        _shapes(models.DilatedNet(num_classes=2), (1, 63, 64, 1))
    with pytest.raises(ValueError, match=r"divisible by 4, got 30"):
        _shapes(models.ConvAutoencoder(), (1, 30, 28, 1))
    with pytest.raises(ValueError, match="skips"):
        models.FCN(skips=3, stages=((4,), (4,), (4,)))
    with pytest.raises(ValueError, match="stages"):
        models.SegNet(stages=((4, 0),))
    with pytest.raises(ValueError, match="num_pools"):
        models.DilatedNet(frontend=(4,), num_pools=2)
    with pytest.raises(ValueError, match=r"SegNet expects `x` of shape \(N, H, W, C\)"):
        _shapes(models.SegNet(), (64, 64, 3))


def test_conv_autoencoder_reconstructs_shape_in_unit_range():
    m = models.ConvAutoencoder(features=(8, 16), latent=4)
    x = jnp.asarray(np.random.default_rng(0).random((2, 28, 28, 1)), jnp.float32)
    v = m.init(jax.random.key(0), x)
    out, f = m.apply(v, x)
    assert out.shape == x.shape and f["code"].shape == (2, 7, 7, 4)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_registry_and_flops():
    from cnn_jax.models.flops import model_macs

    for name in ("unet", "segnet", "fcn8s", "fcn16s", "fcn32s", "dilated_net", "conv_autoencoder"):
        assert name in models.MODELS
    # Down: 3x3 1->4 and 4->4 at 8x8; bottom: two 3x3 4->4 at 4x4; the 2x2 up-convolution
    # 4->4 to 8x8, counted as flops.py counts transposed convolutions (the convolution of
    # the zero-dilated input: 8x8 outputs x 2x2x4x4); up: 3x3 8->4 and 4->4 at 8x8; 1x1 4->2.
    macs = model_macs("unet", (8, 8, 1), num_classes=2, features=(4, 4), padding="SAME")
    expected = 64 * (36 + 144) + 16 * (144 + 144) + 64 * 64 + 64 * (288 + 144) + 64 * 8
    assert macs == expected
