"""Gatys, Ecker & Bethge's losses: content, Gram-matrix style, total variation.

"A Neural Algorithm of Artistic Style" (arXiv:1508.06576) and "Texture Synthesis
Using Convolutional Neural Networks" (NeurIPS 2015). For a layer with ``N`` feature
maps of ``M = h * w`` positions, ``F`` the ``(M, N)`` responses to the generated image
and ``P`` to the content image:

* content: ``L_c = 1/2 * sum (F - P)^2`` (equation 1 of the paper);
* Gram matrix: ``G = F^T F`` (``N x N``, the unnormalized inner products);
* style: ``E_l = 1 / (4 N^2 M^2) * sum (G - A)^2`` with ``A`` the style image's Gram
  matrix, ``L_s = sum_l w_l E_l`` (equations 3-5; ``w_l = 1 / len(layers)``);
* total: ``alpha * L_c + beta * L_s (+ tv_weight * L_tv)``, with the paper's
  ``alpha / beta`` of 1e-3 or 1e-4;
* total variation (not in the paper, a common regularizer):
  ``L_tv = sum (x[i+1, j] - x[i, j])^2 + (x[i, j+1] - x[i, j])^2``.

All functions take batched ``(B, h, w, N)`` features and return per-image values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from cnn_jax.style.features import check_layers

__all__ = [
    "CONTENT_LAYERS",
    "STYLE_LAYERS",
    "StyleWeights",
    "content_loss",
    "gram_matrix",
    "layer_style_loss",
    "style_loss",
    "total_loss",
    "tv_loss",
]

Array = Any

#: Gatys et al.'s style layers (Caffe's in-place ReLUs: the rectified responses).
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: Gatys et al.'s content layer.
CONTENT_LAYERS = ("relu4_2",)


def _check4(x: Any, name: str) -> None:
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"`{name}` must be (B, h, w, N) features, got shape {jnp.shape(x)}")


def gram_matrix(features: Array) -> Array:
    """``G = F^T F`` per image: ``(B, h, w, N)`` -> ``(B, N, N)`` (unnormalized).

    Raises:
      ValueError: for features that are not 4-d.
    """
    _check4(features, "features")
    b, h, w, n = features.shape
    f = features.reshape(b, h * w, n)
    return jnp.einsum("bmi,bmj->bij", f, f, precision="highest")


def content_loss(features: Array, target: Array) -> Array:
    """``1/2 * sum (F - P)^2`` per image, ``(B,)``.

    Raises:
      ValueError: for features that are not 4-d or shapes that differ.
    """
    _check4(features, "features")
    if features.shape != target.shape:
        raise ValueError(
            f"`features` {features.shape} and `target` {target.shape} must have one shape"
        )
    return 0.5 * jnp.sum(jnp.square(features - target), axis=(1, 2, 3))


def layer_style_loss(features: Array, target_gram: Array) -> Array:
    """``1 / (4 N^2 M^2) * sum (G - A)^2`` per image, ``(B,)``.

    Args:
      features: ``(B, h, w, N)`` responses to the generated image.
      target_gram: ``(B, N, N)`` or ``(N, N)`` Gram matrix of the style image.

    Raises:
      ValueError: for a Gram matrix whose size is not ``N x N``.
    """
    _check4(features, "features")
    _, h, w, n = features.shape
    if target_gram.shape[-2:] != (n, n):
        raise ValueError(f"`target_gram` {target_gram.shape} must end in ({n}, {n})")
    g = gram_matrix(features)
    m = h * w
    return jnp.sum(jnp.square(g - target_gram), axis=(1, 2)) / (4.0 * n**2 * m**2)


def style_loss(
    features: Mapping[str, Array],
    target_grams: Mapping[str, Array],
    weights: Mapping[str, float] | None = None,
) -> Array:
    """``sum_l w_l E_l`` per image (equal weights ``1 / L`` by default).

    Raises:
      ValueError: for a layer of ``target_grams`` missing from ``features``.
    """
    layers = tuple(target_grams)
    missing = [n for n in layers if n not in features]
    if missing:
        raise ValueError(f"`features` lack the style layers {missing}")
    if weights is None:
        weights = {n: 1.0 / len(layers) for n in layers}
    return sum(weights[n] * layer_style_loss(features[n], target_grams[n]) for n in layers)


def tv_loss(images: Array) -> Array:
    """Squared total variation per image of ``(B, H, W, C)``, ``(B,)``."""
    _check4(images, "images")
    dh = jnp.square(images[:, 1:] - images[:, :-1]).sum(axis=(1, 2, 3))
    dw = jnp.square(images[:, :, 1:] - images[:, :, :-1]).sum(axis=(1, 2, 3))
    return dh + dw


@dataclasses.dataclass(frozen=True)
class StyleWeights:
    """The weights and layers of the total loss.

    Attributes:
      content_layers: layers of the content loss (summed).
      style_layers: layers of the style loss (equal weights).
      alpha: content weight.
      beta: style weight (``alpha / beta`` = 1e-3 by default).
      tv_weight: total-variation weight on the [0, 1] image (0: off).
    """

    content_layers: Sequence[str] = CONTENT_LAYERS
    style_layers: Sequence[str] = STYLE_LAYERS
    alpha: float = 1.0
    beta: float = 1e3
    tv_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("content_layers", "style_layers"):
            v = getattr(self, name)
            if isinstance(v, str) or not isinstance(v, Sequence):
                raise ValueError(f"`{name}` (={v!r}) must be a sequence of layer names")
            object.__setattr__(self, name, tuple(v))
        if self.content_layers:
            check_layers(self.content_layers, "content_layers")
        if self.style_layers:
            check_layers(self.style_layers, "style_layers")
        for name in ("alpha", "beta", "tv_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"`{name}` (={v!r}) must be a number >= 0")
        if not self.content_layers and not self.style_layers:
            raise ValueError("`content_layers` and `style_layers` are both empty")

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer either loss reads."""
        return tuple(dict.fromkeys((*self.content_layers, *self.style_layers)))


def total_loss(
    features: Mapping[str, Array],
    images: Array,
    content_targets: Mapping[str, Array],
    style_grams: Mapping[str, Array],
    weights: StyleWeights,
) -> tuple[Array, dict[str, Array]]:
    """``alpha * L_c + beta * L_s + tv_weight * L_tv`` per image, and its parts.

    Args:
      features: the generated images' features (every layer of ``weights.layers``).
      images: the generated ``(B, H, W, 3)`` images in [0, 1] (for the TV term).
      content_targets: the content image's features per content layer.
      style_grams: the style image's Gram matrices per style layer.
      weights: the layers and weights.

    Returns:
      ``(loss (B,), {'content', 'style', 'tv'})``.
    """
    b = images.shape[0]
    zero = jnp.zeros((b,), images.dtype)
    lc = sum((content_loss(features[n], content_targets[n]) for n in weights.content_layers), zero)
    ls = style_loss(features, {n: style_grams[n] for n in weights.style_layers}) + zero
    ltv = tv_loss(images) if weights.tv_weight else zero
    loss = weights.alpha * lc + weights.beta * ls + weights.tv_weight * ltv
    return loss, {"content": lc, "style": ls, "tv": ltv}
