r"""Sequence losses: WaveNet's negative log-likelihood in bits per sample.

Registered in ``cnn_jax.train.losses`` as ``wavenet_nll`` for models whose outputs are
per-id mean log2-likelihoods per sample (``cnn_jax.models.WaveNetScorer``: the model
mu-law-encodes the batch's raw audio itself and masks the zero padding after each
recording, so the input pipeline is unchanged). The training step passes the batch's
labels to the model (global conditioning on the true id), and so does evaluation (the
loss sets ``label_in_eval``: one forward pass, scored on the true id). Per example:

* loss: :math:`-\frac{1}{T_n} \sum_{t < T_n} \log_2 p(x_t \mid x_{<t}, y_n)`, bits per
  sample over the ``T_n`` valid samples of utterance ``n`` (the loop averages it over
  utterances);
* correct: the fraction of those samples whose most likely code is the true one.

:func:`sequence_nll_bits` is the same quantity from logits and integer targets.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["sequence_nll_bits", "wavenet_loss"]

Array = Any


def sequence_nll_bits(logits: Array, targets: Array, mask: Array | None = None) -> Array:
    """Per-sequence mean negative log2-likelihood of ``targets`` under ``logits``.

    Args:
      logits: ``(N, T, Q)``.
      targets: ``(N, T)`` integer classes.
      mask: optional ``(N, T)`` weights (1 for the samples that count).

    Returns:
      ``(N,)`` bits per sample, in float32.

    Raises:
      ValueError: naming ``logits`` or ``targets`` if their shapes disagree.
    """
    if logits.ndim != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"`logits` must be (N, T, Q) and `targets` (N, T), got {logits.shape} and "
            f"{targets.shape}"
        )
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0] / np.log(2.0)
    m = jnp.ones(targets.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    return jnp.sum(nll * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


def wavenet_loss(outputs: Array, features: dict[str, Array], batch: dict[str, Array]) -> tuple:
    """``wavenet_nll``: bits per sample given the true id, and next-sample accuracy.

    Args:
      outputs: ``(N, K)`` mean log2-likelihood per sample under each id (``-inf`` for
        ids not computed).
      features: with ``accuracy`` ``(N, K)``.
      batch: with ``label`` ``(N,)`` (ids; ignored by an unconditional model, ``K = 1``).

    Returns:
      ``(losses, correct)``, both ``(N,)``.

    Raises:
      ValueError: naming ``outputs`` if it is not ``(N, K)``.
    """
    label = batch["label"]
    if outputs.ndim != 2 or outputs.shape[0] != label.shape[0]:
        raise ValueError(
            f"`outputs` must be (N, K) log2-likelihoods for the {label.shape[0]} examples, "
            f"got shape {outputs.shape}"
        )
    idx = label if outputs.shape[1] > 1 else jnp.zeros_like(label)
    take = lambda a: jnp.take_along_axis(a, idx[:, None], axis=1)[:, 0]  # noqa: E731
    return -take(outputs), take(features["accuracy"])
