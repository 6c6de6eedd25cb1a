"""Fast (queued) WaveNet generation draws exactly the samples of the full causal convolution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.data.mulaw import mu_law_decode
from cnn_jax.models.wavenet import WaveNet, dilation_stack
from cnn_jax.models.wavenet_generate import _gumbel, generate, generate_naive

SMALL = dict(residual_channels=8, gate_channels=8, skip_channels=16)


@pytest.mark.parametrize(
    "kw",
    [
        dict(dilations=dilation_stack(4, 2), num_classes=3, local_channels=2, local_upsample=4),
        pytest.param(
            dict(dilations=(1, 3, 9), kernel_size=3, input_kernel_size=3), marks=pytest.mark.slow
        ),
        pytest.param(
            dict(dilations=(1, 2, 4, 8), input_kernel_size=1, quantization=64),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_fast_generation_equals_naive_and_the_full_forward(kw):
    m = WaveNet(**kw, **SMALL)
    n, t = 3, 2 * m.receptive_field() + 7  # past the receptive field: the queues wrap
    label = jnp.array([0, 2, 1]) if m.num_classes else None
    local = jax.random.normal(jax.random.key(3), (n, -(-t // 4), 2)) if m.local_channels else None
    v = m.init(jax.random.key(0), jnp.zeros((n, t, 1)), label=label, local=local)
    key = jax.random.key(5)
    fast = np.asarray(generate(m, v, key, t, batch_size=n, label=label, local=local, unroll=2))
    naive = np.asarray(generate_naive(m, v, key, t, batch_size=n, label=label, local=local))
    assert fast.shape == (n, t) and fast.dtype == np.int32
    np.testing.assert_array_equal(fast, naive)
    assert len(np.unique(fast)) > 10  # real draws, not a constant
    # The model's full causal convolution over the whole generated sequence, with the
    # same Gumbel noise, picks every generated sample again.
    audio = mu_law_decode(jnp.asarray(fast), m.quantization - 1)[..., None]
    logits, feats = m.apply(v, audio, label=label, local=local)
    np.testing.assert_array_equal(feats["codes"], fast)
    noise = np.swapaxes(np.asarray(_gumbel(key, t, n, m.quantization)), 0, 1)
    np.testing.assert_array_equal(np.argmax(np.asarray(logits) + noise, -1), fast)
    other = np.asarray(generate(m, v, jax.random.key(6), t, batch_size=n, label=label, local=local))
    assert np.mean(other != fast) > 0.5


def test_generation_bad_arguments_are_named():
    m = WaveNet(dilations=(1, 2), num_classes=2, **SMALL)
    v = m.init(jax.random.key(0), jnp.zeros((1, 4, 1)), label=jnp.zeros(1, int))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="needs `label`"):
        generate(m, v, key, 10)
    with pytest.raises(ValueError, match=r"`label` must be \(2,\)"):
        generate(m, v, key, 10, batch_size=2, label=jnp.zeros(3, int))
    with pytest.raises(ValueError, match=r"`num_samples` \(=0\)"):
        generate(m, v, key, 0, label=jnp.zeros(1, int))
    with pytest.raises(ValueError, match=r"`batch_size` \(=0\)"):
        generate_naive(m, v, key, 5, batch_size=0, label=jnp.zeros(1, int))
    with pytest.raises(ValueError, match=r"`unroll` \(=0\)"):
        generate(m, v, key, 5, label=jnp.zeros(1, int), unroll=0)
    with pytest.raises(TypeError, match="`model` must be"):
        generate(object(), v, key, 5)
