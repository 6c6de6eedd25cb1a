"""WaveNet as a scorer for the training loop: per-id log2-likelihoods of utterances.

The training loop needs ``(outputs, features)`` from which a loss and an accuracy follow;
:class:`WaveNetScorer` gives, for each utterance and conditioning id, the mean log2
probability of its mu-law codes (``cnn_jax.train.losses_sequence.wavenet_loss`` turns it
into bits per sample). Same parameters as :class:`cnn_jax.models.wavenet.WaveNet`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data.mulaw import mu_law_encode
from cnn_jax.models.wavenet import WaveNet, check_audio, shift_right, valid_mask

__all__ = ["WaveNetScorer"]

Array = Any


class WaveNetScorer(WaveNet):
    r"""WaveNet whose outputs are per-id log2-likelihoods, for the training loop.

    ``outputs[n, k]`` is the mean over the valid samples of utterance ``n``
    (:func:`valid_mask`) of :math:`\log_2 p(x_t \mid x_{<t}, k)`, minus bits per sample.
    With ``label`` (training) only the label's column is computed and the others are
    ``-inf`` (the training loop's ``wavenet_nll`` passes it in evaluation too); without
    it every id's, by running the batch once per id (``num_classes`` times the work),
    e.g. to classify an utterance by its likelihood. Unconditional: one column.
    Features ``accuracy`` ``(N, K)``: the fraction of valid samples whose most likely
    code is the true one.
    """

    def __call__(
        self,
        x: Array,
        train: bool = False,
        label: Array | None = None,
        local: Array | None = None,
    ) -> tuple[Array, dict[str, Array]]:
        """See the class docstring; ``x``, ``label``, ``local`` as for :class:`WaveNet`."""
        del train
        n, t = check_audio(x, "WaveNetScorer")
        k = self.num_classes or 1
        codes = mu_law_encode(x[..., 0], self.quantization - 1)
        inputs = jax.nn.one_hot(
            shift_right(codes, self.quantization), self.quantization, dtype=jnp.float32
        )
        mask = valid_mask(x)
        label, local = self._check_conditioning(n, t, label, local, need_label=False)
        if self.num_classes and label is None:
            ids = jnp.repeat(jnp.arange(k, dtype=jnp.int32)[None], n, axis=0)  # (N, K)
        elif self.num_classes:
            ids = jnp.asarray(label)[:, None]
        else:
            ids = None
        c = 1 if ids is None else ids.shape[1]
        rep = lambda a: None if a is None else jnp.repeat(a, c, axis=0)  # noqa: E731
        logits, _ = self.logits_from_inputs(
            rep(inputs), None if ids is None else ids.reshape(-1), rep(local)
        )
        logp = jax.nn.log_softmax(logits, axis=-1)
        tgt = rep(codes)[..., None]
        ll = jnp.take_along_axis(logp, tgt, axis=-1)[..., 0] / np.log(2.0)
        hit = (jnp.argmax(logits, -1) == tgt[..., 0]).astype(jnp.float32)
        m = rep(mask)
        denom = jnp.sum(m, axis=1)
        bits = (jnp.sum(ll * m, axis=1) / denom).reshape(n, c)
        acc = (jnp.sum(hit * m, axis=1) / denom).reshape(n, c)
        if self.num_classes and label is not None:
            onehot = jax.nn.one_hot(label, k, dtype=bool)
            bits = jnp.where(onehot, bits, -jnp.inf)
            acc = jnp.where(onehot, acc, 0.0)
        return bits, {"accuracy": acc, "valid": denom.reshape(n, c)[:, 0]}
