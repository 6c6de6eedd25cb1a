"""Universal style transfer (Li, Fang, Yang, Wang, Lu & Yang, NeurIPS 2017).

"Universal Style Transfer via Feature Transforms" (arXiv:1705.08086): encode content
and style with VGG-19 up to ``relu{k}_1``, replace the content features' covariance by
the style's with a whitening and colouring transform (:func:`wct`), and decode with a
decoder trained only to invert the encoder (:class:`WCTDecoder`); no optimization per
style. :func:`universal_stylize` applies the levels coarse to fine (``relu5_1`` first).

:class:`WCTAutoencoder` is the trainable unit for ``python -m experiments.main``: a
frozen VGG-19 encoder (``params['encoder']``, ``cnn_jax.models.VGG19``'s ``features_*``
names; freeze it with ``config.freeze = ('encoder',)``) and a decoder
(``params['decoder']``); the loss ``wct_reconstruction`` (``cnn_jax.train.losses``) is
the paper's ``||I_o - I_i||^2 + lambda ||Phi(I_o) - Phi(I_i)||^2`` (means over elements,
``lambda = 1``), in the preprocessed pixel space.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.layers import Conv
from cnn_jax.style.features import VGGFeatures, deprocess, preprocess, select_params

__all__ = [
    "WCTAutoencoder",
    "WCTDecoder",
    "feature_covariance",
    "reconstruction_loss",
    "reconstruction_loss_fn",
    "universal_stylize",
    "wct",
]

Array = Any

#: Convolutions of VGG-19 per block (the decoder mirrors the blocks below a level).
_WIDTHS = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)


def _check_level(level: Any) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 5:
        raise ValueError(f"`level` (={level!r}) must be an int in 1..5 (relu{{level}}_1)")
    return level


def feature_covariance(features: Array) -> tuple[Array, Array]:
    """Mean ``(C,)`` and covariance ``(C, C)`` (divisor ``M - 1``) of ``(h, w, C)`` features."""
    f = features.reshape(-1, features.shape[-1])
    mean = f.mean(axis=0)
    fc = f - mean
    return mean, fc.T @ fc / max(f.shape[0] - 1, 1)


def _sqrt_inv(cov: Array, eps: float, power: float) -> Array:
    eigval, eigvec = jnp.linalg.eigh(cov)
    eigval = jnp.maximum(eigval, eps)
    return (eigvec * eigval**power) @ eigvec.T


def wct(content: Array, style: Array, alpha: float = 1.0, eps: float = 1e-5) -> Array:
    """Whitening and colouring transform of ``(h, w, C)`` content features.

    ``f_cs = E_s D_s^{1/2} E_s^T E_c D_c^{-1/2} E_c^T (f_c - m_c) + m_s`` with the
    eigen-decompositions ``cov_c = E_c D_c E_c^T`` and ``cov_s = E_s D_s E_s^T``
    (eigenvalues floored at ``eps``); the result has the style's mean and, when the
    content covariance has no eigenvalue below ``eps``, exactly its covariance.
    Returned as ``alpha * f_cs + (1 - alpha) * f_c``.

    Args:
      content: ``(h, w, C)`` content features.
      style: ``(hs, ws, C)`` style features (any spatial size).
      alpha: the style strength in [0, 1].
      eps: the eigenvalue floor.

    Raises:
      ValueError: for features that are not 3-d, channel counts that differ, or an
        ``alpha`` outside [0, 1].
    """
    if content.ndim != 3 or style.ndim != 3 or content.shape[-1] != style.shape[-1]:
        raise ValueError(
            f"`content` {content.shape} and `style` {style.shape} must be (h, w, C) with one C"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` (={alpha!r}) must be in [0, 1]")
    mc, cov_c = feature_covariance(content)
    ms, cov_s = feature_covariance(style)
    f = content.reshape(-1, content.shape[-1]) - mc
    whitened = f @ _sqrt_inv(cov_c, eps, -0.5)
    coloured = whitened @ _sqrt_inv(cov_s, eps, 0.5) + ms
    return alpha * coloured.reshape(content.shape) + (1.0 - alpha) * content


class WCTDecoder(nn.Module):
    """Inverts VGG-19's ``relu{level}_1``: VGG's blocks mirrored, nearest upsampling.

    Each mirrored block runs its 3x3 convolutions (reflection padding, ReLU) in
    reverse widths, then a 2x nearest upsampling; a last 3x3 convolution gives 3
    channels in the preprocessed pixel space (no activation), as Li et al.'s decoders.

    Attributes:
      level: 1..5.
    """

    level: int = 1

    def __post_init__(self) -> None:
        _check_level(self.level)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``(N, H / 2^(level-1), W / 2^(level-1), C)`` features -> ``(N, H, W, 3)``."""
        conv = functools.partial(Conv, kernel_size=3, padding=1, padding_mode="reflect")
        names = (f"conv_{i}" for i in range(64))

        def up(x: Array) -> Array:
            n, h, w, c = x.shape
            return jax.image.resize(x, (n, 2 * h, 2 * w, c), "nearest")

        if self.level >= 2:
            # relu{level}_1's convolution inverted, then the blocks below, mirrored
            x = up(nn.relu(conv(_WIDTHS[self.level - 2][-1], name=next(names))(x)))
            for b in range(self.level - 1, 1, -1):
                for _ in range(len(_WIDTHS[b - 1]) - 1):
                    x = nn.relu(conv(_WIDTHS[b - 1][0], name=next(names))(x))
                x = up(nn.relu(conv(_WIDTHS[b - 2][-1], name=next(names))(x)))
            x = nn.relu(conv(64, name=next(names))(x))
        return conv(3, name=next(names))(x)


class WCTAutoencoder(nn.Module):
    """A frozen VGG-19 encoder to ``relu{level}_1`` and a :class:`WCTDecoder` to train.

    Attributes:
      level: 1..5.
      upscale: the input images are resized by this factor first (bilinear), e.g.
        CIFAR-10's 32x32 to 64x64 so that ``relu5_1`` is 4x4.
      preprocessing: ``'torchvision'`` or ``'caffe'`` (as the encoder's weights).
      num_classes: unused (the training loop passes the data set's).

    ``__call__(images, train)`` takes RGB in [0, 1] and returns ``(logits, features)``
    with ``features = {'reconstruction', 'target', 'encoded', 'reencoded'}`` (the
    decoder's output and the preprocessed input, both ``(N, H, W, 3)``, their
    ``relu{level}_1``). A decoder classifies nothing: ``logits`` are ``(N, 0)``, so
    the loop's accuracies read 0.
    """

    level: int = 1
    upscale: int = 2
    preprocessing: str = "torchvision"
    num_classes: int | None = None

    def __post_init__(self) -> None:
        _check_level(self.level)
        if self.num_classes is not None and (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 1
        ):
            raise ValueError(f"`num_classes` (={self.num_classes!r}) must be a positive int")
        if isinstance(self.upscale, bool) or not isinstance(self.upscale, int) or self.upscale < 1:
            raise ValueError(f"`upscale` (={self.upscale!r}) must be a positive int")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Encodes, decodes and re-encodes ``(N, H, W, 3)`` images in [0, 1]."""
        del train
        n, h, w, c = x.shape
        if self.upscale > 1:
            x = jax.image.resize(x, (n, h * self.upscale, w * self.upscale, c), "linear")
        target = preprocess(x, self.preprocessing)
        layer = f"relu{self.level}_1"
        # frozen: no gradient reaches the encoder's parameters
        frozen = nn.map_variables(
            VGGFeatures,
            "params",
            trans_in_fn=functools.partial(jax.tree.map, jax.lax.stop_gradient),
            init=self.is_initializing(),
        )
        encoder = frozen(layers=(layer,), name="encoder")
        encoded = encoder(target)[layer]
        rec = WCTDecoder(self.level, name="decoder")(jax.lax.stop_gradient(encoded))
        reencoded = encoder(rec)[layer]
        features = {"reconstruction": rec, "target": target}
        features |= {"encoded": encoded, "reencoded": reencoded}
        return jnp.zeros((n, 0), rec.dtype), features


def reconstruction_loss(features: Mapping[str, Array], feature_weight: float = 1.0) -> Array:
    """Per-example ``mean (I_o - I_i)^2 + feature_weight * mean (Phi(I_o) - Phi(I_i))^2``.

    Args:
      features: :class:`WCTAutoencoder`'s features.
      feature_weight: ``lambda``.
    """
    pixel = jnp.mean(jnp.square(features["reconstruction"] - features["target"]), axis=(1, 2, 3))
    feat = jnp.mean(jnp.square(features["reencoded"] - features["encoded"]), axis=(1, 2, 3))
    return pixel + feature_weight * feat


def reconstruction_loss_fn(
    outputs: Array,
    features: Mapping[str, Array],
    batch: Mapping[str, Array],
    feature_weight: float = 1.0,
) -> tuple[Array, Array]:
    """``config.loss = 'wct_reconstruction'``: ``(reconstruction_loss, zeros)`` per example.

    ``feature_weight`` (``lambda``) may be set through ``config.loss_options``. The
    second value (the loop's "correct" count) is always 0: a decoder has no accuracy;
    its evaluation metric is the loss.
    """
    del outputs, batch
    losses = reconstruction_loss(features, feature_weight)
    return losses, jnp.zeros_like(losses)


def universal_stylize(
    encoder_params: Mapping[str, Any],
    decoder_params: Mapping[int, Any],
    content: Array,
    style: Array,
    *,
    levels: Sequence[int] = (5, 4, 3, 2, 1),
    alpha: float = 1.0,
    preprocessing: str = "torchvision",
) -> Array:
    """Li et al.'s multi-level stylization in one forward pass per level.

    Args:
      encoder_params: VGG-19 params (``features_*``).
      decoder_params: ``{level: WCTDecoder params}`` for every level of ``levels``.
      content: ``(H, W, 3)`` RGB in [0, 1], sides multiples of ``2^(max level - 1)``.
      style: ``(Hs, Ws, 3)`` RGB in [0, 1].
      levels: the levels in the order applied (coarse to fine by default).
      alpha: the style strength of every level.
      preprocessing: as the encoder's weights.

    Returns:
      ``(H, W, 3)`` clipped to [0, 1].

    Raises:
      ValueError: for a level without decoder parameters.
    """
    missing = [lv for lv in levels if lv not in decoder_params]
    if missing:
        raise ValueError(f"`decoder_params` lack the levels {missing} of `levels` (={levels!r})")
    s = preprocess(jnp.asarray(style)[None], preprocessing)
    x = preprocess(jnp.asarray(content)[None], preprocessing)
    for level in levels:
        layer = f"relu{_check_level(level)}_1"
        enc = VGGFeatures(layers=(layer,))
        p = {"params": select_params(encoder_params, (layer,))}
        fc, fs = enc.apply(p, x)[layer], enc.apply(p, s)[layer]
        f = wct(fc[0], fs[0], alpha)[None]
        x = WCTDecoder(level).apply({"params": decoder_params[level]}, f)
    return jnp.clip(deprocess(x[0], preprocessing), 0.0, 1.0)
