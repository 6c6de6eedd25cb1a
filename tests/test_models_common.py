"""The helpers the model families share (``cnn_jax.models._common``)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import _common, densenet, googlenet, inception, resnet, resnet_v2, xception


def test_torch_trunc_normal_bounds_are_absolute():
    init = googlenet.torch_trunc_normal(1.0, -0.5, 0.5)
    w = np.asarray(init(jax.random.key(0), (20_000,)))
    assert w.min() >= -0.5 and w.max() <= 0.5 and w.min() < -0.49
    w = np.asarray(googlenet.torch_trunc_normal(0.1)(jax.random.key(1), (20_000,)))
    assert abs(w.std() - 0.1) < 0.003  # [-2, 2] is 20 standard deviations
    with pytest.raises(ValueError, match="stddev"):
        googlenet.torch_trunc_normal(0.0)


def test_old_names_keep_their_meaning():
    """``TORCH_CONV_INIT`` is fan_out in resnet and fan_in in densenet; the norm partials
    keep their epsilons where they were defined."""
    assert resnet.TORCH_CONV_INIT is _common.TORCH_CONV_INIT_FAN_OUT
    assert densenet.TORCH_CONV_INIT is _common.TORCH_CONV_INIT_FAN_IN
    assert googlenet.torch_trunc_normal is _common.torch_trunc_normal
    assert googlenet.TorchBatchNorm.keywords == {"epsilon": 1e-3}
    assert inception.InceptionV3.norm is googlenet.TorchBatchNorm
    assert resnet.KerasBatchNorm is resnet_v2.KerasBatchNorm
    assert resnet.KerasBatchNorm.keywords["epsilon"] == 1.001e-5
    assert xception.KerasBatchNorm.keywords["epsilon"] == 1e-3
    for partial in (resnet.KerasBatchNorm, xception.KerasBatchNorm):
        assert partial.keywords["momentum"] == 0.99
        assert partial.keywords["unbiased_running_var"] is False


@pytest.mark.parametrize(
    ("init", "fan_axis"),
    [(_common.TORCH_CONV_INIT_FAN_OUT, 3), (_common.TORCH_CONV_INIT_FAN_IN, 2)],
    ids=["fan_out", "fan_in"],
)
def test_torch_conv_inits(init, fan_axis):
    """Kaiming normal: std ``sqrt(2 / fan)``, fan = 3 * 3 * (output or input channels)."""
    shape = (3, 3, 32, 128) if fan_axis == 2 else (3, 3, 128, 32)
    w = np.asarray(init(jax.random.key(0), shape, jnp.float32))
    fan = 9 * shape[fan_axis]
    assert abs(w.std() / np.sqrt(2 / fan) - 1) < 0.03


def test_checks_name_the_argument_and_the_value():
    assert _common.check_positive_int(np.int64(3), "n") == 3
    assert _common.check_positive_ints([1, 2], "sizes") == (1, 2)
    assert _common.check_rate(np.float32(0.5), "dropout") == 0.5
    assert _common.check_choice("A", "shortcut", ("A", "B")) == "A"
    cases = [
        (_common.check_positive_int, 0, "n"),
        (_common.check_positive_int, True, "n"),
        (_common.check_positive_int, 2.0, "n"),
        (_common.check_positive_ints, (), "sizes"),
        (_common.check_positive_ints, "12", "sizes"),
        (_common.check_positive_ints, (1, 0), "sizes"),
        (_common.check_rate, 1.0, "dropout"),
        (_common.check_rate, -0.1, "dropout"),
        (_common.check_rate, True, "dropout"),
        (_common.check_rate, "0.5", "dropout"),
    ]
    for check, value, name in cases:
        with pytest.raises(ValueError, match=re.escape(f"`{name}` (={value!r})")):
            check(value, name)
    with pytest.raises(ValueError, match=r"`shortcut` \(='C'\) must be one of \['A', 'B'\]"):
        _common.check_choice("C", "shortcut", ("A", "B"))


def test_check_images():
    assert _common.check_images(jnp.zeros((2, 8, 9, 3)), "M") == (2, 8, 9, 3)
    with pytest.raises(
        ValueError, match=r"M expects `x` of shape \(N, H, W, C\), got shape \(8, 8, 3\)"
    ):
        _common.check_images(np.zeros((8, 8, 3)), "M")
    with pytest.raises(ValueError, match=r"got \[1, 2\]"):
        _common.check_images([1, 2], "M")
    with pytest.raises(
        ValueError, match=r"M needs `x` of at least 9x9 pixels, got shape \(1, 8, 9, 3\)"
    ):
        _common.check_images(np.zeros((1, 8, 9, 3)), "M", 9)
