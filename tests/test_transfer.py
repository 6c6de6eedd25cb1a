"""Transfer learning: linear probes, frozen layers and BN, auxiliary losses."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize

from cnn_jax.models import CNNMnist
from cnn_jax.train import (
    TrainState,
    extract_features,
    fit_logistic_regression,
    freeze_labels,
    frozen_batch_norm,
    partition_optimizer,
    train_step,
)
from cnn_jax.train.steps import cross_entropy


def _scipy_logreg(x, y, k, l2):
    """The same objective minimized by scipy's L-BFGS-B, in float64."""
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    xs = ((x - mean) / scale).astype(np.float64)
    n, d = xs.shape
    onehot = np.eye(k)[y]

    def f(theta):
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        z = xs @ w + b
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        p = np.exp(logp)
        loss = -(onehot * logp).sum() / n + 0.5 * l2 * (w**2).sum()
        g = (p - onehot) / n
        return loss, np.concatenate([(xs.T @ g + l2 * w).ravel(), g.sum(0)])

    res = optimize.minimize(f, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                            options={"maxiter": 5000, "gtol": 1e-10})  # fmt: skip
    return res.x[: d * k].reshape(d, k), res.x[d * k :]


def test_logistic_regression_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)) * rng.uniform(0.5, 3, 6) + rng.normal(size=6)
    y = rng.integers(0, 3, 120)
    x[:, 0] += y  # some signal
    probe = fit_logistic_regression(x, y, l2=0.05, tolerance=1e-7)
    w, b = _scipy_logreg(x, y, 3, 0.05)
    # Softmax is invariant to a shift of b; compare centred biases.
    np.testing.assert_allclose(probe.weights, w, atol=2e-4)
    np.testing.assert_allclose(probe.bias - probe.bias.mean(), b - b.mean(), atol=2e-4)
    assert 0 < probe.iterations < 500


def test_logistic_regression_separates_blobs():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 10)) * 5
    y = rng.integers(0, 4, 400)
    x = centres[y] + rng.normal(size=(400, 10))
    probe = fit_logistic_regression(x[:300], y[:300], num_classes=4)
    assert probe.accuracy(x[300:], y[300:]) == 1.0
    assert probe.logits(x[:2]).shape == (2, 4)


def test_logistic_regression_errors():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"`features` \(4 rows\) and `labels` \(3\)"):
        fit_logistic_regression(x, np.zeros(3, int))
    with pytest.raises(ValueError, match=r"`labels` must be in \[0, 2\), got \[0, 5\]"):
        fit_logistic_regression(x, np.array([0, 1, 5, 1]), num_classes=2)
    with pytest.raises(TypeError, match="must be integers"):
        fit_logistic_regression(x, np.zeros(4))
    with pytest.raises(ValueError, match=r"`l2` \(=-1\)"):
        fit_logistic_regression(x, np.zeros(4, int), l2=-1)


@pytest.fixture(scope="module")
def cnn():
    model = CNNMnist(num_classes=10, widths=(4, 8), hidden=16)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 12, 12, 1)))
    return model, variables


def test_extract_features_equals_apply(cnn):
    model, variables = cnn
    x = np.random.default_rng(0).normal(size=(7, 12, 12, 1)).astype(np.float32)
    feats = extract_features(model, variables, x, "block1", batch_size=3)
    _, want = model.apply(variables, x, train=False)
    np.testing.assert_allclose(feats, want["block1"], rtol=1e-5, atol=1e-6)
    logits = extract_features(model, variables, x, "logits", batch_size=4)
    np.testing.assert_allclose(logits, model.apply(variables, x)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"`feature` \(='nope'\).*it has: logits, block0"):
        extract_features(model, variables, x, "nope")
    with pytest.raises(ValueError, match=r"`batch_size` \(=0\)"):
        extract_features(model, variables, x, "block0", batch_size=0)


def test_probe_on_frozen_features(cnn):
    """Off-the-shelf features of a (random) CNN + a probe beat chance on separable data."""
    model, variables = cnn
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 12, 12, 1)).astype(np.float32) * 0.3
    x[y == 1, :6] += 2.0  # class 1 is bright at the top
    feats = extract_features(model, variables, x, "block1").reshape(200, -1)
    probe = fit_logistic_regression(feats[:150], y[:150], l2=1e-2)
    assert probe.accuracy(feats[150:], y[150:]) > 0.9


def _state(model, variables, tx):
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables["batch_stats"],
    )


def test_freeze_params_and_batch_norm(cnn):
    model, variables = cnn
    patterns = ("^conv0_", "^bn0_")
    labels = freeze_labels(variables["params"], patterns)
    assert labels["conv0_0"]["kernel"] == "frozen" and labels["conv1_0"]["kernel"] == "trainable"
    tx = partition_optimizer(optax.sgd(0.1), variables["params"], patterns)
    state = _state(model, variables, tx)
    rng = np.random.default_rng(3)
    batch = {
        "image": rng.normal(size=(8, 12, 12, 1)).astype(np.float32),
        "label": rng.integers(0, 10, 8),
    }
    step = jax.jit(
        lambda s, b: train_step(
            s, b, base_key=jax.random.key(0), schedule=lambda _: 0.1, frozen=patterns
        )
    )
    new, _ = step(state, batch)
    for name in ("conv0_0", "conv0_1", "bn0_0", "bn0_1"):
        for leaf, v in new.params[name].items():
            np.testing.assert_array_equal(v, state.params[name][leaf], err_msg=f"{name}/{leaf}")
        for leaf, v in new.batch_stats.get(name, {}).items():
            np.testing.assert_array_equal(v, state.batch_stats[name][leaf], err_msg=name)
    assert set(new.batch_stats["bn0_0"]) == {"mean", "var"}
    assert not np.allclose(new.params["conv1_0"]["kernel"], state.params["conv1_0"]["kernel"])
    assert not np.allclose(new.batch_stats["bn1_0"]["mean"], state.batch_stats["bn1_0"]["mean"])


def test_frozen_batch_norm_uses_running_statistics(cnn):
    model, variables = cnn
    x = np.random.default_rng(4).normal(size=(4, 12, 12, 1)).astype(np.float32) + 3
    with frozen_batch_norm(("^bn",)):
        frozen, updates = model.apply(
            variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)}
        )
    # Every BN frozen: the features (before dropout) equal inference mode's.
    _, want = model.apply(variables, x, train=False)
    np.testing.assert_allclose(frozen[1]["block1"], want["block1"], rtol=1e-6)
    trained, _ = model.apply(variables, x, train=True, mutable=["batch_stats"],
                             rngs={"dropout": jax.random.key(0)})  # fmt: skip
    assert not np.allclose(trained[1]["block1"], want["block1"], atol=1e-3)
    jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])


def test_freeze_pattern_errors(cnn):
    _, variables = cnn
    with pytest.raises(ValueError, match=r"freeze pattern '\^layer9' matches no parameter"):
        freeze_labels(variables["params"], ("^layer9",))
    with pytest.raises(ValueError, match="invalid regular expression"):
        freeze_labels(variables["params"], ("(",))
    with pytest.raises(TypeError, match="not a string"):
        freeze_labels(variables["params"], "conv")


class _AuxNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        h = x.reshape(len(x), -1)
        logits = nn.Dense(3, name="head")(h)
        feats = {"pre_logits": h}
        if train:
            feats["aux_logits1"] = nn.Dense(3, name="aux1")(h)
            feats["aux_logits2"] = nn.Dense(3, name="aux2")(h)
        return logits, feats


def test_aux_loss_weight():
    model = _AuxNet()
    x = np.random.default_rng(5).normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    variables = model.init(jax.random.key(1), x, train=True)
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optax.sgd(0.0))
    _, m = train_step(
        state, {"image": x, "label": y}, base_key=jax.random.key(0),
        schedule=lambda _: 0.0, aux_loss_weight=0.3,
    )  # fmt: skip
    logits, feats = model.apply(variables, x, train=True)
    main = float(jnp.mean(cross_entropy(logits, y)))
    aux = sum(float(jnp.mean(cross_entropy(feats[k], y))) for k in ("aux_logits1", "aux_logits2"))
    np.testing.assert_allclose(float(m["main_loss"]), main, rtol=1e-5)
    np.testing.assert_allclose(float(m["loss"]), main + 0.3 * aux, rtol=1e-5)
    _, m0 = train_step(
        state, {"image": x, "label": y}, base_key=jax.random.key(0), schedule=lambda _: 0.0
    )
    np.testing.assert_allclose(float(m0["loss"]), main, rtol=1e-5)
