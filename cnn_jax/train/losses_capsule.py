r"""CapsNet's loss (Sabour et al. 2017): margin loss plus a small reconstruction loss.

Margin loss, for each class ``k`` with target :math:`T_k` (1 if the class is present):
:math:`L_k = T_k \max(0, m^+ - \|v_k\|)^2 + \lambda (1 - T_k) \max(0, \|v_k\| - m^-)^2`,
summed over the classes (:math:`m^+ = 0.9`, :math:`m^- = 0.1`, :math:`\lambda = 0.5`).
Reconstruction loss: the sum of squared differences between the decoder's output and
the input image (in ``[0, 1]``), scaled by 0.0005 so that it does not dominate.

Registered in ``cnn_jax.train.losses`` as ``capsule_margin``: the training loop passes
the batch's labels to the model (the decoder reads the true class's capsule) and calls
:func:`capsule_loss` with the model's outputs (the capsule lengths) and features.
Labels are ``(N,)`` classes or ``(N, K)`` multi-hot (MultiMNIST); for multi-hot
labels an example is correct when its ``m`` longest capsules are its ``m`` labels.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "RECONSTRUCTION_WEIGHT",
    "capsule_loss",
    "capsule_targets",
    "margin_loss",
    "multi_label_correct",
    "reconstruction_loss",
]

Array = Any

#: The paper's weight of the reconstruction loss.
RECONSTRUCTION_WEIGHT = 0.0005


def capsule_targets(label: Array, num_classes: int) -> Array:
    """``(N,)`` classes or ``(N, K)`` multi-hot labels as a float ``(N, K)`` target.

    Raises:
      ValueError: naming ``label`` if its shape is neither.
    """
    label = jnp.asarray(label)
    if label.ndim == 1:
        return jax.nn.one_hot(label, num_classes, dtype=jnp.float32)
    if label.ndim == 2 and label.shape[1] == num_classes:
        return label.astype(jnp.float32)
    raise ValueError(f"`label` must have shape (N,) or (N, {num_classes}), got {label.shape}")


def margin_loss(
    lengths: Array,
    label: Array,
    *,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    down_weight: float = 0.5,
) -> Array:
    """Per-example margin loss, summed over the classes.

    Args:
      lengths: ``(N, K)`` capsule lengths.
      label: ``(N,)`` classes or ``(N, K)`` multi-hot.
      m_plus: a present class's capsule should be at least this long.
      m_minus: an absent class's capsule should be at most this long.
      down_weight: lambda, the weight of the absent classes' term.

    Returns:
      ``(N,)`` losses in float32.
    """
    lengths = lengths.astype(jnp.float32)
    t = capsule_targets(label, lengths.shape[-1])
    present = t * jnp.square(jnp.maximum(0.0, m_plus - lengths))
    absent = down_weight * (1.0 - t) * jnp.square(jnp.maximum(0.0, lengths - m_minus))
    return jnp.sum(present + absent, axis=-1)


def reconstruction_loss(reconstruction: Array, images: Array) -> Array:
    """Per-example sum of squared differences over every pixel and channel.

    Args:
      reconstruction: ``(N, ...)`` the decoder's output.
      images: the input images, of the same shape, in ``[0, 1]``.

    Returns:
      ``(N,)`` float32.

    Raises:
      ValueError: naming both shapes if they differ.
    """
    if reconstruction.shape != images.shape:
        raise ValueError(
            f"`reconstruction` shape {reconstruction.shape} differs from `images` shape "
            f"{images.shape}"
        )
    d = reconstruction.astype(jnp.float32) - images.astype(jnp.float32)
    return jnp.sum(jnp.square(d).reshape(d.shape[0], -1), axis=-1)


def multi_label_correct(lengths: Array, label: Array) -> Array:
    """Whether each example's predicted classes are its labels.

    ``(N,)`` labels: the longest capsule is the label. ``(N, K)`` multi-hot: the ``m``
    longest capsules are the ``m`` labelled classes (the paper's MultiMNIST protocol
    with ``m = 2``).

    Returns:
      ``(N,)`` float32, 1 for correct.
    """
    label = jnp.asarray(label)
    if label.ndim == 1:
        return (jnp.argmax(lengths, -1) == label).astype(jnp.float32)
    t = capsule_targets(label, lengths.shape[-1]) > 0
    m = jnp.sum(t, axis=-1, keepdims=True)
    # rank 0 = longest; an example is right when every labelled class ranks below m.
    rank = jnp.argsort(jnp.argsort(-lengths, axis=-1), axis=-1)
    in_top = rank < m
    return jnp.all(in_top == t, axis=-1).astype(jnp.float32)


def capsule_loss(
    outputs: Array,
    features: dict[str, Array],
    batch: dict[str, Array],
    *,
    reconstruction_weight: float = RECONSTRUCTION_WEIGHT,
) -> tuple[Array, Array]:
    """Margin loss plus the weighted reconstruction loss, per example.

    Args:
      outputs: ``(N, K)`` capsule lengths (``CapsNet``'s outputs).
      features: the model's features; ``reconstruction`` is used when present.
      batch: ``image`` (the model's input, in ``[0, 1]``) and ``label``.
      reconstruction_weight: the reconstruction loss's weight.

    Returns:
      ``(losses, correct)``, both ``(N,)`` float32.
    """
    loss = margin_loss(outputs, batch["label"])
    if "reconstruction" in features and reconstruction_weight:
        loss = loss + reconstruction_weight * reconstruction_loss(
            features["reconstruction"], batch["image"]
        )
    return loss, multi_label_correct(outputs, batch["label"])
