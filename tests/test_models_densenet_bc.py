"""DenseNet-BC for CIFAR-10 (Huang et al. 2017): sizes, layout, argument errors."""

from __future__ import annotations

import pytest

from cnn_jax.models import densenet_bc
from tests.model_helpers import count, output_shapes, template


def _by_hand(depth, k, theta=0.5, classes=10):
    """Parameters of the layout, counted layer by layer."""
    n = (depth - 4) // 6
    c = 2 * k
    total = 27 * c  # stem 3x3 convolution
    for block in range(3):
        for _ in range(n):
            total += 2 * c + c * 4 * k + 2 * 4 * k + 9 * 4 * k * k  # BN, 1x1, BN, 3x3
            c += k
        if block < 2:
            out = int(theta * c)
            total += 2 * c + c * out  # BN, 1x1 compression
            c = out
    return total + 2 * c + c * classes + classes  # final BN, classifier


@pytest.mark.parametrize(
    "make, expected",
    [
        (densenet_bc.DenseNetBC100, 769_162),  # the paper's 0.8M
        pytest.param(densenet_bc.DenseNetBC250, 15_324_406, marks=pytest.mark.slow),  # 15.3M
    ],
)
def test_parameter_counts(make, expected):
    assert count(template(make(), 32)["params"]) == expected


def test_counts_by_hand():
    assert _by_hand(100, 12) == 769_162
    assert _by_hand(250, 24) == 15_324_406
    assert _by_hand(190, 40) == 25_624_430  # the paper's 25.6M (L=190, k=40)
    small = densenet_bc.DenseNetBCCifar(depth=16, growth_rate=6, compression=0.75)
    assert count(template(small, 32)["params"]) == _by_hand(16, 6, 0.75)


def test_shapes():
    model = densenet_bc.DenseNetBCCifar(depth=16, growth_rate=4, num_classes=7)
    logits, f = output_shapes(model, 32)
    assert logits == (2, 7)
    assert f == {
        "stem": (2, 32, 32, 8),
        "denseblock1": (2, 32, 32, 16),
        "transition1": (2, 16, 16, 8),
        "denseblock2": (2, 16, 16, 16),
        "transition2": (2, 8, 8, 8),
        "denseblock3": (2, 8, 8, 16),
        "post": (2, 8, 8, 16),
        "pre_logits": (2, 16),
    }


@pytest.mark.parametrize("depth", [0, 4, 99, 101, 100.0, True])
def test_bad_depth_names_the_value(depth):
    with pytest.raises(ValueError, match=rf"`depth` \(={depth!r}\)"):
        densenet_bc.DenseNetBCCifar(depth=depth)


@pytest.mark.parametrize("growth_rate", [0, -12, 12.0])
def test_bad_growth_rate_names_the_value(growth_rate):
    with pytest.raises(ValueError, match=rf"`growth_rate` \(={growth_rate!r}\)"):
        densenet_bc.DenseNetBCCifar(growth_rate=growth_rate)


@pytest.mark.parametrize("compression", [0, 0.0, -0.5, 1.5, True, "0.5"])
def test_bad_compression_names_the_value(compression):
    with pytest.raises(ValueError, match=rf"`compression` \(={compression!r}\)"):
        densenet_bc.DenseNetBCCifar(compression=compression)


def test_other_arguments():
    assert densenet_bc.dense_block_size(100) == 16
    densenet_bc.DenseNetBCCifar(compression=1)  # no compression: allowed
    with pytest.raises(ValueError, match=r"`num_classes` \(=0\)"):
        densenet_bc.DenseNetBC100(num_classes=0)
    with pytest.raises(ValueError, match=r"`drop_rate` \(=1.0\)"):
        densenet_bc.DenseNetBC100(drop_rate=1.0)
