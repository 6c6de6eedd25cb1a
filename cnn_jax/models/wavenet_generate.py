"""Sampling from a :class:`cnn_jax.models.WaveNet`: fast (queued) and naive generation.

**Fast** (Paine et al. 2016, "Fast Wavenet generation algorithm"): every dilated
layer keeps a queue (a ring buffer of ``(kernel_size - 1) * dilation`` entries) of
its past inputs, so a new sample costs one ``(k R) x 2G`` and one ``G x (S + R)``
product per block and the output layers: O(layers) work per sample, independent of the
receptive field. The queues are the row ranges of one buffer, so a step reads every
layer's past inputs with one gather and stores its new inputs with one scatter (separate
buffers updated one by one were copied every step, 2.5x slower). The loop over time is
one ``lax.scan`` under ``jit``; utterances are batched. Empty queue entries are zeros,
exactly the causal padding of the convolutions.

**Naive**: for every sample, the full causal convolution (the model's own forward,
``WaveNet.logits_from_inputs``) over the window of the last ``receptive_field``
inputs (from the start while shorter), then the logits of its newest position: O(layers
x receptive field) per sample, a ``lax.fori_loop`` under ``jit``.

Both draw sample ``t`` as ``argmax(logits_t + g_t)`` with the same Gumbel noise
``g = jax.random.gumbel(key, (T, N, Q))`` (the categorical distribution of the logits),
so for one ``key`` they produce the same codes (the test suite checks it in float32).
Inputs start from silence (code ``quantization // 2``, 128); codes become audio by
``cnn_jax.data.mulaw.mu_law_decode``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.models._common import check_positive_int
from cnn_jax.models.wavenet import WaveNet, shift_right

__all__ = ["generate", "generate_naive"]

Array = Any


def _conditioning(model: WaveNet, n: int, t: int, label: Any, local: Any) -> tuple[Any, Any]:
    if not isinstance(model, WaveNet):
        raise TypeError(f"`model` must be a cnn_jax.models.WaveNet, got {type(model).__name__}")
    check_positive_int(n, "batch_size")
    check_positive_int(t, "num_samples")
    return model._check_conditioning(n, t, label, local)


def _gumbel(key: Array, t: int, n: int, q: int) -> Array:
    return jax.random.gumbel(key, (t, n, q), jnp.float32)


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 7))
def _fast(model, params, key, t, n, label, local, unroll):
    q, r, g = model.quantization, model.residual_channels, model.gate_channels
    k, k_in = model.kernel_size, model.input_kernel_size
    n_blocks = len(model.dilations)
    blocks = [params[f"block_{i}"] for i in range(n_blocks)]
    w_in = params["input_kernel"]  # (k_in, Q, R)
    w_dil = [b["dilated_kernel"].reshape(k * r, 2 * g) for b in blocks]
    b_dil = jnp.stack([b["dilated_bias"] for b in blocks])  # (L, 2G)
    if model.num_classes:
        gc = jnp.stack([jnp.take(b["global_embedding"], label, axis=0) for b in blocks])
        b_dil = b_dil[:, None, :] + gc  # (L, N, 2G)
    else:
        b_dil = jnp.broadcast_to(b_dil[:, None, :], (n_blocks, n, 2 * g))
    w_out = []
    for i, b in enumerate(blocks):
        if i < n_blocks - 1:
            w = jnp.concatenate([b["skip_kernel"], b["residual_kernel"]], axis=1)
            bb = jnp.concatenate([b["skip_bias"], b["residual_bias"]])
        else:
            w, bb = b["skip_kernel"], b["skip_bias"]
        w_out.append((w, bb))
    if model.local_channels:
        v_local = jnp.concatenate([b["local_kernel"] for b in blocks], axis=1)  # (F, L 2G)
        xs_local = jnp.swapaxes(local, 0, 1)  # (T, N, F)
    else:
        v_local, xs_local = None, jnp.zeros((t, 0), jnp.float32)
    # All queues in one buffer: layer i owns rows offsets[i] .. offsets[i] + sizes[i].
    dil = np.asarray(model.dilations)
    sizes = (k - 1) * dil
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    lags = np.arange(k - 1, 0, -1)[None, :] * dil[:, None]  # (L, k - 1): (k-1)d .. d
    queues = jnp.zeros((int(sizes.sum()), n, r), jnp.float32)
    codes_in = jnp.full((max(k_in - 1, 1), n), -1, jnp.int32)  # past input codes, -1 = none
    noise = _gumbel(key, t, n, q)

    def step(carry, xs):
        step_t, prev_inputs, qs, code = carry
        g_t, local_t = xs
        # input layer: tap w reads the input at t - (k_in - 1 - w); the newest is `code`
        hist = jnp.concatenate([prev_inputs, code[None]], axis=0)[-k_in:]
        x = params["input_bias"]
        for w in range(k_in):
            c = hist[w]
            x = x + jnp.where((c >= 0)[:, None], jnp.take(w_in[w], jnp.maximum(c, 0), axis=0), 0)
        lc = None if v_local is None else (local_t @ v_local).reshape(n, n_blocks, 2 * g)
        # One gather of every layer's past inputs (they do not depend on this step) and,
        # after the layers, one scatter of this step's inputs into the same rows' ring.
        read = offsets[:, None] + (step_t - lags) % sizes[:, None]  # (L, k - 1)
        past = qs[read]  # (L, k - 1, N, R)
        layer_inputs, skips = [], 0.0
        for i in range(n_blocks):
            taps = [past[i, j] for j in range(k - 1)]
            h = jnp.concatenate([*taps, x], axis=-1) @ w_dil[i] + b_dil[i]
            if lc is not None:
                h = h + lc[:, i]
            layer_inputs.append(x)
            z = jnp.tanh(h[:, :g]) * jax.nn.sigmoid(h[:, g:])
            w, bb = w_out[i]
            o = z @ w + bb
            skips = skips + o[:, : model.skip_channels]
            if i < n_blocks - 1:
                x = x + o[:, model.skip_channels :]
        hdn = jax.nn.relu(jax.nn.relu(skips) @ params["output1_kernel"] + params["output1_bias"])
        logits = hdn @ params["output2_kernel"] + params["output2_bias"]
        new = jnp.argmax(logits + g_t, axis=-1).astype(jnp.int32)
        prev = jnp.concatenate([prev_inputs, code[None]], axis=0)[1:]
        qs = qs.at[offsets + step_t % sizes].set(jnp.stack(layer_inputs))
        return (step_t + 1, prev, qs, new), new

    start = jnp.full((n,), q // 2, jnp.int32)
    init = (jnp.int32(0), codes_in, queues, start)
    _, out = lax.scan(step, init, (noise, xs_local), unroll=unroll)
    return out.T


def generate(
    model: WaveNet,
    variables: Any,
    key: Array,
    num_samples: int,
    *,
    batch_size: int = 1,
    label: Array | None = None,
    local: Array | None = None,
    unroll: int = 1,
) -> Array:
    """Samples codes with the queued O(layers)-per-sample algorithm (module docstring).

    Args:
      model: the WaveNet (or ``WaveNetScorer``) the variables belong to.
      variables: its variables (``{'params': ...}``).
      key: PRNG key of the draws.
      num_samples: samples per utterance, ``T``.
      batch_size: utterances, ``N``.
      label: ``(N,)`` ids if the model has global conditioning.
      local: ``(N, frames, local_channels)`` if it has local conditioning.
      unroll: time steps per ``lax.scan`` iteration.

    Returns:
      ``(N, T)`` int32 mu-law codes.

    Raises:
      TypeError, ValueError: naming ``model``, ``batch_size``, ``num_samples``,
        ``label``, ``local`` or ``unroll`` when they do not fit.
    """
    label, local = _conditioning(model, batch_size, num_samples, label, local)
    check_positive_int(unroll, "unroll")
    return _fast(model, variables["params"], key, num_samples, batch_size, label, local, unroll)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _naive(model, variables, key, t, n, label, local):
    q = model.quantization
    win = min(model.receptive_field(), t)
    noise = _gumbel(key, t, n, q)

    def body(i, codes):
        start = jnp.clip(i - win + 1, 0, t - win)
        inputs = lax.dynamic_slice_in_dim(shift_right(codes, q), start, win, axis=1)
        loc = None if local is None else lax.dynamic_slice_in_dim(local, start, win, axis=1)
        logits, _ = model.apply(
            variables,
            jax.nn.one_hot(inputs, q, dtype=jnp.float32),
            label,
            loc,
            method=WaveNet.logits_from_inputs,
        )
        row = lax.dynamic_index_in_dim(logits, i - start, axis=1, keepdims=False)
        new = jnp.argmax(row + noise[i], axis=-1).astype(jnp.int32)
        return lax.dynamic_update_index_in_dim(codes, new, i, axis=1)

    return lax.fori_loop(0, t, body, jnp.zeros((n, t), jnp.int32))


def generate_naive(
    model: WaveNet,
    variables: Any,
    key: Array,
    num_samples: int,
    *,
    batch_size: int = 1,
    label: Array | None = None,
    local: Array | None = None,
) -> Array:
    """Samples codes by recomputing the causal convolutions for every sample.

    Same arguments, draws and result as :func:`generate` (without ``unroll``).
    """
    label, local = _conditioning(model, batch_size, num_samples, label, local)
    return _naive(model, variables, key, num_samples, batch_size, label, local)
