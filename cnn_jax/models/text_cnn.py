"""Sentence classifiers over word ids: Kim (2014)'s CNN and a dilated causal CNN.

``TextCNN`` (Kim 2014, "Convolutional Neural Networks for Sentence Classification"):
a word embedding (``embed_dim`` 300); for each filter width in ``widths`` (3, 4, 5),
``maps`` (100) one-dimensional convolutions over the sequence of word vectors, each
spanning the whole embedding, with ReLU; max-over-time pooling of each map; dropout
(0.5) on the concatenated ``len(widths) * maps`` features; a linear softmax layer,
``output``, whose weight columns the training keeps at L2 norm at most 3 (the
``optim.max_norm`` projection of :mod:`cnn_jax.train.optim`). As in Kim's code every
sentence is padded with ``max(widths) - 1`` padding words on each side, and the padding
word's vector is zero (it never changes). Variants: ``'rand'`` (CNN-rand: every vector
drawn from ``U[-0.25, 0.25]``, trained), ``'static'`` (pre-trained vectors, kept fixed),
``'non-static'`` (pre-trained vectors, fine-tuned); the pre-trained matrix comes from
``embeddings``, a ``.npy`` file of shape ``(vocab_size, embed_dim)`` written by
:func:`cnn_jax.data.embeddings.save_embedding_matrix` (rows of words without a
pre-trained vector drawn from ``U[-0.25, 0.25]``, as in Kim's code).

``DilatedTextCNN``: the same embedding, then a stack of causal 1-D convolutions
(kernel ``kernel_size``, dilations ``dilations``, so position ``t`` sees only words
``<= t``) with residual connections and ReLU, then max-over-time pooling, dropout and
a linear output: a second, deeper baseline whose receptive field grows exponentially
with depth.

Both take ``(N, L)`` integer word ids (0 the padding word, as
:func:`cnn_jax.data.text.encode` writes them) and return ``(logits, features)``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.layers import Conv
from cnn_jax.models._common import (
    Array,
    check_choice,
    check_positive_int,
    check_positive_ints,
    check_rate,
)

__all__ = ["EMBEDDING_MODES", "DilatedTextCNN", "TextCNN", "check_tokens"]

#: Values of ``TextCNN.mode``.
EMBEDDING_MODES = ("rand", "static", "non-static")


def check_tokens(x: Any, model: str, vocab_size: int) -> Array:
    """Checks that ``x`` is a ``(N, L)`` array of ids below ``vocab_size``; returns int32 ids.

    Float arrays are accepted and truncated to int32 (the training loop initializes
    every model with a float32 zero batch). The ids' range is checked for numpy inputs
    only (a traced array has no values).

    Raises:
      ValueError: naming ``x`` and its shape, dtype or bad id.
    """
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 2:
        got = f"shape {tuple(shape)}" if shape is not None else repr(x)
        raise ValueError(f"{model} expects word ids `x` of shape (N, L), got {got}")
    if not (jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.floating)):
        raise ValueError(f"{model} expects word ids `x` (integers), got dtype {x.dtype}")
    if isinstance(x, np.ndarray):
        arr = x
        if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
            raise ValueError(
                f"{model}: `x` holds word ids in [{arr.min()}, {arr.max()}], outside "
                f"[0, vocab_size={vocab_size})"
            )
    return jnp.asarray(x).astype(jnp.int32)


def _embedding_init(path: str | None, vocab_size: int, embed_dim: int):
    def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        if path is None:
            return jax.random.uniform(key, shape, dtype, -0.25, 0.25)
        matrix = np.load(path)
        if matrix.shape != (vocab_size, embed_dim):
            raise ValueError(
                f"`embeddings` file {path!r} holds a matrix of shape {matrix.shape}, "
                f"expected (vocab_size, embed_dim) = {(vocab_size, embed_dim)}"
            )
        return jnp.asarray(matrix, dtype)

    return init


class _Embed(nn.Module):
    """Word vectors; the padding id 0 always gives the zero vector."""

    vocab_size: int
    embed_dim: int
    embeddings: str | None
    trainable: bool
    dtype: Any

    @nn.compact
    def __call__(self, ids: Array) -> Array:
        table = self.param(
            "embedding",
            _embedding_init(self.embeddings, self.vocab_size, self.embed_dim),
            (self.vocab_size, self.embed_dim),
        )
        if not self.trainable:
            table = jax.lax.stop_gradient(table)
        h = jnp.take(table, ids, axis=0) * (ids != 0)[..., None].astype(table.dtype)
        return h if self.dtype is None else h.astype(self.dtype)


class TextCNN(nn.Module):
    """Kim (2014)'s sentence CNN (see the module docstring).

    Attributes:
      num_classes: output classes.
      vocab_size: rows of the embedding (ids must be below it).
      embed_dim: the word vectors' size.
      widths: filter widths, in words.
      maps: feature maps per width.
      dropout: dropout rate on the pooled features.
      mode: ``'rand'``, ``'static'`` or ``'non-static'``.
      embeddings: a ``.npy`` ``(vocab_size, embed_dim)`` matrix of pre-trained vectors
        (required by ``'static'`` and ``'non-static'``, refused by ``'rand'``).
      dtype: computation dtype.
    """

    num_classes: int = 2
    vocab_size: int = 20000
    embed_dim: int = 300
    widths: tuple[int, ...] = (3, 4, 5)
    maps: int = 100
    dropout: float = 0.5
    mode: str = "rand"
    embeddings: str | None = None
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_positive_int(self.vocab_size, "vocab_size")
        check_positive_int(self.embed_dim, "embed_dim")
        check_positive_ints(self.widths, "widths")
        check_positive_int(self.maps, "maps")
        check_rate(self.dropout, "dropout")
        check_choice(self.mode, "mode", EMBEDDING_MODES)
        if (self.mode == "rand") != (self.embeddings is None):
            raise ValueError(
                f"`embeddings` (={self.embeddings!r}) must be a .npy file for mode "
                f"'static' or 'non-static' and None for 'rand'; `mode`={self.mode!r}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Classifies sentences.

        Args:
          x: ``(N, L)`` word ids, 0 for padding (integers; floats are truncated).
          train: dropout on.

        Returns:
          ``(logits (N, num_classes), features)``: ``'embedded'`` (``(N, L + 2 pad,
          embed_dim)``), ``'conv_w'`` per width (``(N, positions, maps)`` after ReLU)
          and ``'pooled'`` (``(N, len(widths) * maps)``).
        """
        x = check_tokens(x, "TextCNN", self.vocab_size)
        pad = max(self.widths) - 1
        ids = jnp.pad(x, ((0, 0), (pad, pad)))
        h = _Embed(
            self.vocab_size, self.embed_dim, self.embeddings, self.mode != "static", self.dtype,
            name="embed",
        )(ids)  # fmt: skip
        feats: dict[str, Array] = {"embedded": h}
        pooled = []
        for w in self.widths:
            c = nn.relu(Conv(self.maps, w, padding="VALID", dtype=self.dtype, name=f"conv{w}")(h))
            feats[f"conv_{w}"] = c
            pooled.append(c.max(axis=1))  # max over time
        z = jnp.concatenate(pooled, axis=-1)
        feats["pooled"] = z
        z = nn.Dropout(self.dropout, deterministic=not train)(z)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(z)
        return logits.astype(jnp.float32), feats


class DilatedTextCNN(nn.Module):
    """A causal dilated 1-D CNN sentence classifier (see the module docstring).

    Attributes:
      num_classes: output classes.
      vocab_size: rows of the embedding.
      embed_dim: the word vectors' size.
      channels: width of the convolution stack.
      kernel_size: taps of each causal convolution.
      dilations: one causal convolution per entry, residual, ReLU.
      dropout: dropout rate before the output layer.
      dtype: computation dtype.
    """

    num_classes: int = 2
    vocab_size: int = 20000
    embed_dim: int = 128
    channels: int = 128
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    dropout: float = 0.5
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        check_positive_int(self.vocab_size, "vocab_size")
        check_positive_int(self.embed_dim, "embed_dim")
        check_positive_int(self.channels, "channels")
        check_positive_int(self.kernel_size, "kernel_size")
        check_positive_ints(self.dilations, "dilations")
        check_rate(self.dropout, "dropout")
        super().__post_init__()

    def receptive_field(self) -> int:
        """Words the last layer's unit at position ``t`` sees (``t`` and earlier)."""
        return 1 + sum((self.kernel_size - 1) * d for d in self.dilations)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Classifies sentences.

        Args:
          x: ``(N, L)`` word ids, 0 for padding (integers; floats are truncated).
          train: dropout on.

        Returns:
          ``(logits (N, num_classes), features)``: ``'embedded'``, ``'layer_i'`` (each
          causal layer's ``(N, L, channels)`` output) and ``'pooled'``.
        """
        x = check_tokens(x, "DilatedTextCNN", self.vocab_size)
        h = _Embed(self.vocab_size, self.embed_dim, None, True, self.dtype, name="embed")(x)
        feats: dict[str, Array] = {"embedded": h}
        h = Conv(self.channels, 1, dtype=self.dtype, name="input_proj")(h)
        for i, d in enumerate(self.dilations):
            y = Conv(
                self.channels, self.kernel_size, padding="CAUSAL", dilation=d,
                dtype=self.dtype, name=f"causal_{i}",
            )(nn.relu(h))  # fmt: skip
            h = h + y
            feats[f"layer_{i}"] = h
        h = nn.relu(h)
        # Padding positions (id 0) are excluded from the max.
        valid = (x != 0)[..., None]
        z = jnp.where(valid, h, jnp.finfo(h.dtype).min).max(axis=1)
        z = jnp.where(valid.any(axis=1), z, 0.0)
        feats["pooled"] = z
        z = nn.Dropout(self.dropout, deterministic=not train)(z)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="output")(z)
        return logits.astype(jnp.float32), feats
