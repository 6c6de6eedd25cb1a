"""Kim's sentence CNN and the dilated causal text CNN; the max-norm projection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from cnn_jax import models
from cnn_jax.models.text_cnn import DilatedTextCNN, TextCNN
from cnn_jax.train import build, steps
from cnn_jax.train.optim import make_optimizer, max_norm_projection
from experiments.configs import textcnn_mr

RNG = np.random.default_rng(0)


def _ids(n: int, length: int, vocab: int) -> np.ndarray:
    ids = RNG.integers(1, vocab, (n, length)).astype(np.int32)
    ids[0, length - 3 :] = 0  # a shorter sentence, padded
    return ids


def test_kim_forward_matches_a_numpy_reference():
    model = TextCNN(vocab_size=30, embed_dim=6, widths=(2, 3), maps=4, dropout=0.5)
    x = _ids(3, 7, 30)
    v = model.init(jax.random.key(0), x)
    logits, feats = model.apply(v, x)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), v["params"])
    table = p["embed"]["embedding"].copy()
    table[0] = 0.0  # the padding word's vector is zero
    padded = np.pad(x, ((0, 0), (2, 2)))  # max(widths) - 1 padding words at each end
    emb = table[padded]
    pooled = []
    for w in (2, 3):
        k, b = p[f"conv{w}"]["kernel"], p[f"conv{w}"]["bias"]
        out = np.stack(
            [
                np.einsum("nwd,wdm->nm", emb[:, t : t + w], k) + b
                for t in range(emb.shape[1] - w + 1)
            ],
            axis=1,
        )
        pooled.append(np.maximum(out, 0).max(axis=1))  # ReLU, max over time
    z = np.concatenate(pooled, -1)
    np.testing.assert_allclose(feats["pooled"], z, rtol=1e-5, atol=1e-5)
    expected = z @ p["output"]["kernel"] + p["output"]["bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_parameter_count_and_registry():
    model = models.get_model("textcnn", vocab_size=textcnn_mr.MR_VOCAB_SIZE)
    v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 56), jnp.int32))
    n = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(v["params"]))
    convs = sum(w * 300 * 100 + 100 for w in (3, 4, 5))
    assert n == 18766 * 300 + convs + 300 * 2 + 2 == 5_990_702
    assert models.model_class("dilated_textcnn") is DilatedTextCNN


def test_static_and_non_static_embeddings(tmp_path):
    matrix = RNG.standard_normal((20, 4)).astype(np.float32)
    path = str(tmp_path / "m.npy")
    np.save(path, matrix)
    x = _ids(2, 6, 20)
    grads = {}
    for mode in ("static", "non-static"):
        model = TextCNN(vocab_size=20, embed_dim=4, widths=(2,), maps=3, mode=mode, embeddings=path)
        v = model.init(jax.random.key(0), x)
        np.testing.assert_array_equal(v["params"]["embed"]["embedding"], matrix)

        def loss(params, model=model):
            return model.apply({"params": params}, x)[0].sum()

        grads[mode] = jax.grad(loss)(v["params"])["embed"]["embedding"]
    assert float(jnp.abs(grads["static"]).max()) == 0.0
    assert float(jnp.abs(grads["non-static"]).max()) > 0.0
    assert float(jnp.abs(grads["non-static"][0]).max()) == 0.0  # padding stays zero
    with pytest.raises(ValueError, match=r"`embeddings` file .*shape \(20, 4\).*\(21, 4\)"):
        TextCNN(vocab_size=21, embed_dim=4, mode="static", embeddings=path).init(
            jax.random.key(0), x
        )


def test_dilated_stack_is_causal():
    model = DilatedTextCNN(vocab_size=40, embed_dim=5, channels=6, kernel_size=2,
                           dilations=(1, 2, 4))  # fmt: skip
    length = 16
    x = np.arange(1, length + 1, dtype=np.int32)[None]  # one id per position
    v = model.init(jax.random.key(0), x)
    rf = model.receptive_field()
    assert rf == 8
    for t in (0, 5, 12):

        def unit(params, t=t):
            return model.apply({"params": params}, x)[1]["layer_2"][0, t].sum()

        g = np.asarray(jax.grad(unit)(v["params"])["embed"]["embedding"])
        seen = {int(i) - 1 for i in np.flatnonzero(np.abs(g).sum(-1) > 0)}  # id -> position
        assert seen == set(range(max(0, t - rf + 1), t + 1)), (t, sorted(seen))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"TextCNN expects word ids `x` of shape \(N, L\)"):
        TextCNN(vocab_size=10).init(jax.random.key(0), jnp.zeros((2, 3, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"word ids in \[1, 12\], outside \[0, vocab_size=10\)"):
        TextCNN(vocab_size=10, embed_dim=4).init(jax.random.key(0), np.array([[1, 12]]))
    with pytest.raises(ValueError, match=r"`mode` \(='dynamic'\)"):
        TextCNN(mode="dynamic")
    with pytest.raises(ValueError, match=r"`embeddings` \(=None\) must be a .npy file"):
        TextCNN(mode="static")
    with pytest.raises(ValueError, match=r"`dilations`"):
        DilatedTextCNN(dilations=())


def test_max_norm_projection_is_exact_and_selective():
    params = {"output": {"kernel": jnp.array([[3.0, 0.1], [4.0, 0.1]]), "bias": jnp.ones(2)},
              "conv": {"kernel": jnp.full((2, 2), 10.0)}}  # fmt: skip
    updates = jax.tree.map(jnp.zeros_like, params)
    tx = max_norm_projection(3.0, ("output/kernel",))
    out, _ = tx.update(updates, tx.init(params), params)
    new = optax.apply_updates(params, out)
    np.testing.assert_allclose(new["output"]["kernel"][:, 0], [1.8, 2.4], rtol=1e-6)  # 5 -> 3
    np.testing.assert_allclose(new["output"]["kernel"][:, 1], [0.1, 0.1])  # short: untouched
    np.testing.assert_array_equal(new["conv"]["kernel"], params["conv"]["kernel"])
    np.testing.assert_array_equal(new["output"]["bias"], params["output"]["bias"])
    with pytest.raises(ValueError, match=r"`optim.max_norm` \(=-1"):
        max_norm_projection(-1.0, ("output/kernel",))
    optim = ConfigDict({"name": "adadelta", "learning_rate": 1.0, "schedule": "constant",
                        "max_norm": 3.0, "max_norm_params": ("output/kernel",),
                        "reduce_on_plateau": {"metric": "test_accuracy"}})  # fmt: skip
    with pytest.raises(ValueError, match=r"`optim.max_norm` cannot be combined"):
        make_optimizer(optim, 10, 100)


def test_max_norm_holds_after_the_loops_train_steps():
    c = textcnn_mr.get_config("runlocal")
    c.optim.max_norm = 0.05  # small enough that every step has to project
    state, schedule = build.build_state(c, 2, (12,), 10, 10, jax.random.key(0))
    batch = {"image": _ids(8, 12, 50), "label": np.arange(8, dtype=np.int32) % 2}
    step = jax.jit(lambda s, b: steps.train_step(s, b, base_key=jax.random.key(1),
                                                 schedule=schedule))  # fmt: skip
    for _ in range(3):
        state, _ = step(state, batch)
        norms = np.linalg.norm(np.asarray(state.params["output"]["kernel"]), axis=0)
        assert np.all(norms <= 0.05 + 1e-6), norms
    conv = np.linalg.norm(np.asarray(state.params["conv3"]["kernel"]).reshape(-1, 8), axis=0)
    assert np.any(conv > 0.05)  # other parameters are not projected
