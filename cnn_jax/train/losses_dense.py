r"""Dense-prediction losses: per-pixel cross-entropy, Dice, and a reconstruction loss.

* :func:`pixel_cross_entropy`: softmax cross-entropy at every pixel of ``(N, H, W, K)``
  logits against ``(N, H, W)`` labels; pixels labelled ``ignore_label`` (255, as in
  PASCAL VOC) contribute nothing; optional ``class_weights`` weigh each pixel by its true
  class. Reductions: ``'per_example'`` (each example's weighted mean over its counted
  pixels), ``'mean'`` (the weighted mean over every counted pixel of the batch,
  :math:`\sum_i w_{y_i} \ell_i / \sum_i w_{y_i}`, PyTorch's ``CrossEntropyLoss(weight,
  ignore_index)``) or ``'none'`` (the ``(N, H, W)`` map, 0 where ignored).
* :func:`dice_loss`: the soft Dice loss (Milletari et al. 2016), per example,
  :math:`1 - \frac{1}{K}\sum_k \frac{2 \sum_i p_{ik} g_{ik} + \epsilon}{\sum_i p_{ik} +
  \sum_i g_{ik} + \epsilon}` over the counted pixels, ``p`` the softmax and ``g`` the
  one-hot labels.
* :func:`reconstruction_mse`: the mean squared error between a model's output and its
  input image (the convolutional autoencoder).

Registered in ``cnn_jax.train.losses`` as ``pixel_cross_entropy``, ``dice``,
``pixel_cross_entropy_dice`` (their sum) and ``reconstruction_mse``; the first three
also give the evaluation step a confusion matrix (``cnn_jax.train.metrics_dense``), so
the loop reports pixel accuracy, per-class IoU and mean IoU. ``config.loss_options``
passes ``ignore_label`` and ``class_weights`` to them. For the training loop a
"correct" example is its fraction of correctly classified counted pixels, so the
logged ``accuracy`` is the mean per-image pixel accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.train.metrics_dense import confusion_matrix

__all__ = [
    "IGNORE_LABEL",
    "dense_confusion",
    "dice_loss",
    "pixel_cross_entropy",
    "pixel_cross_entropy_dice",
    "pixel_loss",
    "reconstruction_mse",
]

Array = Any

#: The default ignore label (PASCAL VOC's 255).
IGNORE_LABEL = 255


def _check(logits: Array, labels: Array) -> None:
    if logits.ndim != 4 or tuple(labels.shape) != tuple(logits.shape[:3]):
        raise ValueError(
            f"`labels` shape {tuple(labels.shape)} must be the logits' (N, H, W) = "
            f"{tuple(logits.shape[:3])} (logits of shape {tuple(logits.shape)}, expected "
            "(N, H, W, K))"
        )


def _weights(labels: Array, k: int, ignore_label: int | None, class_weights: Any) -> Array:
    """Per-pixel weights: 0 for ignored (or out-of-range) labels, else the class weight."""
    valid = (labels >= 0) & (labels < k)
    if ignore_label is not None:
        valid &= labels != ignore_label
    w = valid.astype(jnp.float32)
    if class_weights is not None:
        cw = jnp.asarray(class_weights, jnp.float32)
        if cw.shape != (k,):
            raise ValueError(
                f"`class_weights` must have one weight per class, shape ({k},), got shape "
                f"{tuple(cw.shape)}"
            )
        w = w * cw[jnp.where(valid, labels, 0)]
    return w


def pixel_cross_entropy(
    logits: Array,
    labels: Array,
    *,
    ignore_label: int | None = IGNORE_LABEL,
    class_weights: Sequence[float] | Array | None = None,
    reduction: str = "per_example",
) -> Array:
    """Per-pixel softmax cross-entropy (see the module docstring).

    Args:
      logits: ``(N, H, W, K)``.
      labels: ``(N, H, W)`` ints in ``[0, K)`` or ``ignore_label``.
      ignore_label: the label of pixels that are not counted (None: none).
      class_weights: optional ``(K,)`` weight of each true class.
      reduction: ``'per_example'`` (``(N,)``), ``'mean'`` (a scalar) or ``'none'``.

    Returns:
      float32 losses as the reduction says; an example without a counted pixel has 0.

    Raises:
      ValueError: for mismatched shapes, a bad ``class_weights`` shape or ``reduction``.
    """
    if reduction not in ("per_example", "mean", "none"):
        raise ValueError(f"`reduction` (={reduction!r}) must be 'per_example', 'mean' or 'none'")
    _check(logits, labels)
    logits = logits.astype(jnp.float32)
    k = logits.shape[-1]
    w = _weights(labels, k, ignore_label, class_weights)
    safe = jnp.where(w > 0, labels, 0)
    logp = jax.nn.log_softmax(logits, axis=-1)
    # A one-hot product, not a gather: its gradient needs no scatter (slow on the CPU).
    nll = -jnp.sum(logp * jax.nn.one_hot(safe, k, dtype=logp.dtype), axis=-1)
    weighted = nll * w
    if reduction == "none":
        return weighted
    if reduction == "mean":
        return jnp.sum(weighted) / jnp.maximum(jnp.sum(w), 1e-12)
    axes = tuple(range(1, labels.ndim))
    return jnp.sum(weighted, axes) / jnp.maximum(jnp.sum(w, axes), 1e-12)


def dice_loss(
    logits: Array,
    labels: Array,
    *,
    ignore_label: int | None = IGNORE_LABEL,
    smooth: float = 1.0,
) -> Array:
    r"""Per-example soft Dice loss, averaged over the classes (see the module docstring).

    Args:
      logits: ``(N, H, W, K)``.
      labels: ``(N, H, W)``.
      ignore_label: pixels with this label are not counted.
      smooth: the :math:`\epsilon` that keeps empty classes at a loss of 0.

    Returns:
      ``(N,)`` float32 losses in ``[0, 1]``.

    Raises:
      ValueError: for mismatched shapes.
    """
    _check(logits, labels)
    k = logits.shape[-1]
    w = _weights(labels, k, ignore_label, None)[..., None]
    p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * w
    g = jax.nn.one_hot(jnp.where(w[..., 0] > 0, labels, 0), k) * w
    axes = tuple(range(1, labels.ndim))
    inter = jnp.sum(p * g, axes)
    denom = jnp.sum(p, axes) + jnp.sum(g, axes)
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1.0 - jnp.mean(dice, axis=-1)


def _pixel_correct(logits: Array, labels: Array, ignore_label: int | None) -> Array:
    w = _weights(labels, logits.shape[-1], ignore_label, None)
    hit = (jnp.argmax(logits, -1) == labels) * w
    axes = tuple(range(1, labels.ndim))
    return jnp.sum(hit, axes) / jnp.maximum(jnp.sum(w, axes), 1e-12)


def pixel_loss(
    outputs: Array,
    features: dict[str, Array],
    batch: dict[str, Array],
    *,
    kind: str = "cross_entropy",
    ignore_label: int | None = IGNORE_LABEL,
    class_weights: Sequence[float] | None = None,
    dice_smooth: float = 1.0,
) -> tuple[Array, Array]:
    """The ``Loss.fn`` of the segmentation losses: per-example ``(losses, pixel accuracy)``.

    Args:
      outputs: ``(N, H, W, K)`` logits.
      features: unused.
      batch: ``label`` ``(N, H, W)``.
      kind: ``'cross_entropy'``, ``'dice'`` or ``'cross_entropy_dice'`` (their sum).
      ignore_label: see :func:`pixel_cross_entropy`.
      class_weights: see :func:`pixel_cross_entropy` (cross-entropy only).
      dice_smooth: see :func:`dice_loss`.

    Returns:
      ``(losses, correct)``, both ``(N,)``.
    """
    del features
    labels = batch["label"]
    losses = 0.0
    if "cross_entropy" in kind:
        losses = losses + pixel_cross_entropy(
            outputs, labels, ignore_label=ignore_label, class_weights=class_weights
        )
    if "dice" in kind:
        losses = losses + dice_loss(outputs, labels, ignore_label=ignore_label, smooth=dice_smooth)
    return losses, _pixel_correct(outputs, labels, ignore_label)


def pixel_cross_entropy_dice(
    outputs: Array, features: dict[str, Array], batch: dict[str, Array], **kwargs: Any
) -> tuple[Array, Array]:
    """:func:`pixel_loss` with ``kind='cross_entropy_dice'``."""
    return pixel_loss(outputs, features, batch, kind="cross_entropy_dice", **kwargs)


def dense_confusion(
    outputs: Array,
    features: dict[str, Array],
    batch: dict[str, Array],
    mask: Array,
    *,
    ignore_label: int | None = IGNORE_LABEL,
    **unused: Any,
) -> dict[str, Array]:
    """The evaluation sums of the segmentation losses: ``{'confusion': (K, K) int32}``.

    Args:
      outputs: ``(N, H, W, K)`` logits.
      features: unused.
      batch: ``label`` ``(N, H, W)``.
      mask: ``(N,)`` 1 for real examples, 0 for padding.
      ignore_label: pixels with this label are not counted.
      **unused: the loss's other options (``class_weights``, ...).
    """
    del features, unused
    pred = jnp.argmax(outputs, axis=-1)
    return {
        "confusion": confusion_matrix(
            pred, batch["label"], outputs.shape[-1], ignore_label=ignore_label, weights=mask
        )
    }


def reconstruction_mse(
    outputs: Array, features: dict[str, Array], batch: dict[str, Array]
) -> tuple[Array, Array]:
    """Per-example mean squared error between ``outputs`` and ``batch['image']``.

    ``correct`` is 1 for an example whose root-mean-square error is below 0.1 (a
    coarse "reconstructed" flag for the logs).

    Raises:
      ValueError: if the output and the image shapes differ.
    """
    del features
    images = batch["image"]
    if tuple(outputs.shape) != tuple(images.shape):
        raise ValueError(
            f"the reconstruction's shape {tuple(outputs.shape)} must equal the images' "
            f"{tuple(images.shape)}"
        )
    err = jnp.square(outputs.astype(jnp.float32) - images.astype(jnp.float32))
    mse = jnp.mean(err.reshape(err.shape[0], -1), axis=-1)
    return mse, (jnp.sqrt(mse) < 0.1).astype(jnp.float32)
