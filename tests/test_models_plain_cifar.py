"""Plain CIFAR nets (He et al. 2015 without shortcuts) and ResNet-1202: sizes, no identity."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnn_jax.models import plain_cifar, resnet
from tests.model_helpers import count, he_variables, jit_o0, normal, output_shapes, template

# He et al. 2015, Table 6: 0.27M / 0.46M / 0.66M / 0.85M / 1.7M / 19.4M (10 classes).
PARAMS = {
    "plain20": (plain_cifar.Plain20, 269_722),
    "plain32": (plain_cifar.Plain32, 464_154),
    "plain44": (plain_cifar.Plain44, 658_586),
    "plain56": (plain_cifar.Plain56, 853_018),
    "plain110": (plain_cifar.Plain110, 1_727_962),
}
RESNET1202 = 19_421_274


@pytest.mark.parametrize(
    "name",
    [
        "plain20",
        "plain56",
        *(pytest.param(n, marks=pytest.mark.slow) for n in ("plain32", "plain44", "plain110")),
    ],
)
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make(), 32)["params"]) == expected


def test_resnet1202_count_by_linearity():
    """A CIFAR ResNet's count is linear in the blocks per stage ``n``: ResNet-20 and
    ResNet-56 fix the line, ResNet-1202 (``n = 200``) is on it."""
    assert plain_cifar.ResNet1202.keywords["stage_sizes"] == (200, 200, 200)
    p3 = count(template(resnet.ResNet20(), 32)["params"])
    p9 = count(template(resnet.ResNet56(), 32)["params"])
    assert p3 + (p9 - p3) * (200 - 3) // 6 == RESNET1202


@pytest.mark.slow
def test_resnet1202_count():
    assert count(template(plain_cifar.ResNet1202(), 32)["params"]) == RESNET1202


def test_shapes_and_num_classes():
    logits, f = output_shapes(plain_cifar.Plain20(num_classes=7), 32)
    assert logits == (2, 7)
    assert f == {
        "stem": (2, 32, 32, 16),
        "layer1": (2, 32, 32, 16),
        "layer2": (2, 16, 16, 32),
        "layer3": (2, 8, 8, 64),
        "pre_logits": (2, 64),
    }


def test_same_variables_as_resnet_option_a():
    """Option A shortcuts have no parameters: plain and residual trees are the same."""
    plain = template(plain_cifar.Plain20(), 32)
    res = template(resnet.ResNet20(), 32)
    assert jax_shapes(plain) == jax_shapes(res)


def jax_shapes(tree):
    return {k: v.shape for k, v in traverse_util.flatten_dict(tree, sep="/").items()}


def _zero_block_output(model):
    variables = he_variables(model, 8)
    variables["params"]["layer2_1"]["conv1"]["kernel"] = np.zeros_like(
        variables["params"]["layer2_1"]["conv1"]["kernel"]
    )
    x = jnp.asarray(normal((2, 8, 8, 3), 1))
    _, f = jit_o0(lambda v, x: model.apply(v, x))(variables, x)
    return f


def test_plain_net_has_no_identity_path():
    """Zeroing one block's first kernel zeroes everything after it in a plain net (no
    path around the block); in the ResNet the shortcut carries the signal past it."""
    f = _zero_block_output(plain_cifar.Plain20())
    assert np.any(np.asarray(f["layer1"]) != 0)
    np.testing.assert_array_equal(f["layer2"], 0.0)
    np.testing.assert_array_equal(f["pre_logits"], 0.0)
    g = _zero_block_output(resnet.ResNet20())
    assert np.all(np.abs(np.asarray(g["pre_logits"])).sum(-1) > 0)


@pytest.mark.parametrize("depth", [0, 7, 19, 21, 20.0, True, "20"])
def test_bad_depth_names_the_value(depth):
    with pytest.raises(ValueError, match=rf"`depth` \(={depth!r}\)"):
        plain_cifar.cifar_stage_size(depth)


def test_bad_arguments():
    assert plain_cifar.cifar_stage_size(110) == 18
    assert plain_cifar.cifar_stage_size(164, per_block=3) == 18
    with pytest.raises(ValueError, match=r"`num_classes` \(=0\)"):
        plain_cifar.Plain20(num_classes=0)
    with pytest.raises(ValueError, match=r"`widths`"):
        plain_cifar.PlainCifar(widths=(16, 32))
