"""All-CNN-C (Springenberg et al. 2015) and Network in Network (Lin et al. 2014)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import allconv
from tests.model_helpers import count, he_variables, jit_o0, normal, output_shapes, template


def conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def test_allconv_count_by_hand():
    expected = (
        conv(3, 3, 96)
        + 2 * conv(3, 96, 96)  # conv2, conv3 (stride 2)
        + conv(3, 96, 192)
        + 3 * conv(3, 192, 192)  # conv5, conv6 (stride 2), conv7 (valid)
        + conv(1, 192, 192)
        + conv(1, 192, 10)
    )
    assert expected == 1_369_738
    assert count(template(allconv.AllConvNet(), 32)["params"]) == expected
    pooled = expected - conv(3, 96, 96) - conv(3, 192, 192)  # Model C: max pooling
    assert count(template(allconv.AllConvNet(downsample="pool"), 32)["params"]) == pooled


def test_nin_count_by_hand():
    expected = (
        conv(5, 3, 192) + conv(1, 192, 160) + conv(1, 160, 96)
        + conv(5, 96, 192) + 2 * conv(1, 192, 192)
        + conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10)
    )  # fmt: skip
    assert expected == 966_986
    assert count(template(allconv.NetworkInNetwork(), 32)["params"]) == expected


def test_shapes():
    logits, f = output_shapes(allconv.AllConvNet(num_classes=7), 32)
    assert logits == (2, 7)
    assert f == {
        "block1": (2, 16, 16, 96),
        "block2": (2, 8, 8, 192),
        "block3": (2, 6, 6, 7),
        "pre_logits": (2, 7),
    }
    assert output_shapes(allconv.AllConvNet(downsample="pool"), 32)[1]["block3"] == (2, 6, 6, 10)
    logits, f = output_shapes(allconv.NetworkInNetwork(num_classes=7), 32)
    assert logits == (2, 7)
    assert f == {
        "mlpconv1": (2, 16, 16, 96),
        "mlpconv2": (2, 8, 8, 192),
        "mlpconv3": (2, 8, 8, 7),
        "pre_logits": (2, 7),
    }


def test_logits_are_the_average_of_the_last_maps_and_dropout_trains_only():
    model = allconv.AllConvNet()
    variables = he_variables(model, 16)
    x = jnp.asarray(normal((2, 16, 16, 3), 1))

    def run(v, key):
        evaluated = model.apply(v, x)
        trained = model.apply(v, x, train=True, rngs={"dropout": key})
        return evaluated, trained

    (logits, f), (trained, _) = jit_o0(run)(variables, jax.random.key(0))
    np.testing.assert_allclose(logits, np.asarray(f["block3"]).mean((1, 2)), rtol=1e-6)
    assert np.all(np.asarray(f["block3"]) >= 0)  # ReLU on the last 1x1 convolution
    assert not np.allclose(logits, trained)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, r"`num_classes` \(=0\)"),
        ({"downsample": "stride"}, r"`downsample` \(='stride'\)"),
        ({"dropout": 1.0}, r"`dropout` \(=1.0\)"),
        ({"input_dropout": -0.1}, r"`input_dropout` \(=-0.1\)"),
    ],
)
def test_allconv_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        allconv.AllConvNet(**kwargs)


def test_nin_bad_arguments_and_small_input():
    with pytest.raises(ValueError, match=r"`num_classes` \(=0\)"):
        allconv.NetworkInNetwork(num_classes=0)
    with pytest.raises(ValueError, match=r"`dropout` \(=2\)"):
        allconv.NetworkInNetwork(dropout=2)
    with pytest.raises(ValueError, match="at least 9x9"):
        output_shapes(allconv.AllConvNet(), 8)
