"""The evaluation step's Loss flags: ``label_in_eval`` and ``top5``."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.models import WaveNetScorer
from cnn_jax.train import losses as losses_lib
from cnn_jax.train.losses import Loss
from cnn_jax.train.state import create_train_state
from cnn_jax.train.steps import eval_step


class _Probe(nn.Module):
    """Scores: 1 for the label when it is passed (else for class 0), 0 elsewhere."""

    @nn.compact
    def __call__(self, x, train=False, label=None):
        self.param("w", nn.initializers.zeros, (1,))
        n = x.shape[0]
        cls = jnp.zeros((n,), jnp.int32) if label is None else label
        return jax.nn.one_hot(cls, 10), {"got_label": jnp.full((n,), label is not None)}


def _probe_fn(outputs, features, batch):
    return jnp.zeros(batch["label"].shape), features["got_label"].astype(jnp.float32)


def _state(model, shape):
    return create_train_state(model, optax.sgd(0.1), jax.random.key(0), shape)


def test_label_in_eval_passes_the_label_and_top5_follows_the_losss_correct(monkeypatch):
    state = _state(_Probe(), (1, 4, 4, 1))
    batch = {"image": jnp.zeros((4, 4, 4, 1)), "label": jnp.array([3, 7, 0, 9])}
    monkeypatch.setitem(
        losses_lib.LOSSES,
        "probe",
        Loss(_probe_fn, label_to_model=True, label_in_eval=True, top5=False),
    )
    out = eval_step(state, batch, loss="probe")
    assert float(out["top1"]) == 4  # the model saw the label
    assert float(out["top5"]) == float(out["top1"])  # not a top-5 over the outputs
    monkeypatch.setitem(losses_lib.LOSSES, "probe", Loss(_probe_fn, label_to_model=True))
    out = eval_step(state, batch, loss="probe")
    assert float(out["top1"]) == 0  # no label in evaluation
    # a top-5 over the scores one-hot(0): ties go to the lower index, classes 0-4,
    # which hold the labels 3 and 0 but not 7 and 9
    assert float(out["top5"]) == 2


def test_loss_flags_are_checked():
    with pytest.raises(ValueError, match="label_in_eval"):
        Loss(_probe_fn, label_in_eval=True)
    with pytest.raises(ValueError, match="eval_sums"):
        Loss(_probe_fn, eval_sums=lambda *a, **k: {})


def test_wavenet_evaluation_is_one_pass_with_the_true_digit():
    """The loop's test loss equals the true digit's column of the all-digits scoring."""
    small = dict(residual_channels=4, gate_channels=4, skip_channels=4, quantization=8)
    model = WaveNetScorer(dilations=(1, 2), num_classes=3, **small)
    state = _state(model, (1, 16, 1))
    audio = jax.random.uniform(jax.random.key(1), (4, 16, 1), minval=-1, maxval=1)
    label = jnp.array([2, 0, 1, 2])
    out = eval_step(state, {"image": audio, "label": label}, loss="wavenet_nll")
    every, _ = model.apply(state.variables(), audio)
    want = -np.asarray(every)[np.arange(4), np.asarray(label)]
    np.testing.assert_allclose(float(out["loss"]), want.sum(), rtol=1e-5)
    assert float(out["top5"]) == pytest.approx(float(out["top1"]))
    lowered = jax.jit(lambda s, b: eval_step(s, b, loss="wavenet_nll")).lower(
        state, {"image": audio, "label": label}
    )
    flops = lowered.compile().cost_analysis()["flops"]
    every_flops = jax.jit(lambda a: model.apply(state.variables(), a)).lower(audio).compile()
    assert flops < 0.6 * every_flops.cost_analysis()["flops"]  # one pass, not three
