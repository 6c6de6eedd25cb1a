"""The multiply-add counter: hand-counted models, scan and cond, every registered model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from cnn_jax import models
from cnn_jax.models import allconv, flops, preact_resnet


def conv_macs(size, k, c_in, c_out):
    """A convolution with a ``size x size`` output: one product per tap, input channel
    and output value."""
    return size * size * c_out * k * k * c_in


def test_resnet20_by_hand():
    """He et al.'s CIFAR ResNet-20: the stem, 3 stages of 6 3x3 convolutions (the first
    of stages 2 and 3 strided, from the narrower input), the classifier; option A
    shortcuts cost nothing. 40.55M multiply-adds, the "41M FLOPs" usually quoted."""
    expected = conv_macs(32, 3, 3, 16) + 6 * conv_macs(32, 3, 16, 16)
    for size, c in ((16, 32), (8, 64)):
        expected += conv_macs(size, 3, c // 2, c) + 5 * conv_macs(size, 3, c, c)
    expected += 64 * 10
    assert expected == 40_551_040
    assert flops.model_macs("resnet20") == expected
    assert flops.model_flops("resnet20") == 2 * expected


def test_lenet5_by_hand():
    """LeNet-5 on 32x32: C1 5x5x6 on 28x28, C3 5x5 6->16 on 10x10 (the connection table
    is a masked dense kernel: the dense products are executed and counted), C5 5x5 16->120
    on 1x1, F6 120->84; the modern variant's output layer adds 84x10 (the paper's RBF
    output is a squared distance, not a product of a layer)."""
    body = conv_macs(28, 5, 1, 6) + conv_macs(10, 5, 6, 16) + conv_macs(1, 5, 16, 120) + 120 * 84
    assert body == 415_680
    assert flops.model_macs("lenet5") == body
    assert flops.model_macs("lenet5_modern") == body + 84 * 10


def test_all_cnn_c_by_hand():
    expected = (
        conv_macs(32, 3, 3, 96) + conv_macs(32, 3, 96, 96) + conv_macs(16, 3, 96, 96)
        + conv_macs(16, 3, 96, 192) + conv_macs(16, 3, 192, 192) + conv_macs(8, 3, 192, 192)
        + conv_macs(6, 3, 192, 192) + conv_macs(6, 1, 192, 192) + conv_macs(6, 1, 192, 10)
    )  # fmt: skip
    assert flops.count_macs(allconv.AllConvNet(), (32, 32, 3)) == expected


def test_scanned_units_count_once_per_iteration():
    scanned = preact_resnet.PreActResNetCifar(depth=29)
    unrolled = preact_resnet.PreActResNetCifar(depth=29, scan=False)
    assert flops.count_macs(scanned, (8, 8, 3)) == flops.count_macs(unrolled, (8, 8, 3)) > 0


def test_jaxpr_rules():
    w = jnp.ones((4, 5))

    def scanned(x):
        return jax.lax.scan(lambda c, _: (c @ jnp.ones((5, 5)), None), x @ w, None, length=3)[0]

    x = jax.ShapeDtypeStruct((2, 4), jnp.float32)
    assert flops.jaxpr_macs(jax.make_jaxpr(scanned)(x)) == 2 * 4 * 5 + 3 * 2 * 5 * 5

    def branches(x):
        def light(v):
            return jnp.zeros((2, 7)) + (v @ w).sum()

        return jax.lax.cond(x.sum() > 0, lambda v: (v @ w) @ jnp.ones((5, 7)), light, x)

    assert flops.jaxpr_macs(jax.make_jaxpr(branches)(x)) == 2 * 4 * 5 + 2 * 5 * 7

    def loop(x):
        return jax.lax.while_loop(lambda v: v.sum() < 0, lambda v: v @ jnp.ones((4, 4)), x)

    with pytest.raises(ValueError, match="while"):
        flops.jaxpr_macs(jax.make_jaxpr(loop)(x))


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"`input_shape` \(=\(32, 0, 3\)\)"):
        flops.count_macs(allconv.AllConvNet(), (32, 0, 3))


def _slow_unless(names, default):
    return [n if n in default else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("name", _slow_unless(sorted(models.MODELS), {"cnn_mnist", "resnet56"}))
def test_every_registered_model_has_a_count(name):
    macs = flops.model_macs(name)
    assert isinstance(macs, int) and macs > 0


def test_mlp_and_text_cnn_by_hand_at_their_published_inputs():
    """Default inputs of non-CIFAR families: a 28x28 MNIST image, 56 token ids (int32)."""
    assert flops.model_macs("mlp_mnist") == 784 * 512 + 512 * 512 + 512 * 10
    # Kim's CNN-rand: 300-d embeddings, 100 maps per window 3/4/5, the sentence padded
    # by (5 - 1) zeros on each side (64 positions), a dense layer to 2 classes.
    convs = sum((64 - h + 1) * 100 * h * 300 for h in (3, 4, 5))
    assert flops.model_macs("textcnn") == convs + 300 * 2


@pytest.mark.parametrize("name", ["tdnn", "spectrogram_cnn", "wavenet", "dilated_textcnn"])
def test_sequence_models_count_on_their_published_inputs(name):
    assert flops.model_macs(name) > 0
