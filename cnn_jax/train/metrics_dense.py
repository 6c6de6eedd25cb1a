r"""Segmentation metrics from a confusion matrix, accumulated over the evaluation set.

``confusion[t, p]`` counts the pixels of true class ``t`` predicted as ``p`` (pixels
whose label is the ignore label, or that belong to padding examples, are not counted).
From the matrix summed over every batch (and every device):

* pixel accuracy :math:`\sum_k C_{kk} / \sum_{t,p} C_{tp}`;
* the IoU of class ``k``, :math:`C_{kk} / (\sum_p C_{kp} + \sum_t C_{tk} - C_{kk})`,
  undefined (NaN) for a class that is neither present nor predicted;
* mean IoU, the mean over the classes whose IoU is defined (as the PASCAL VOC and
  Cityscapes evaluations do); and the mean per-class accuracy.

Streaming is exact: the per-batch matrices are counted in float32 (exact below
``2**24`` pixels a batch) and converted to int32 before they are summed, so the
result does not depend on how the set is cut into batches or devices. Under ``jit``
with a sharded batch, the sum over the batch axis is global; under ``pmap`` the
evaluation step ``psum``\ s the matrix with its other sums.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["confusion_matrix", "segmentation_scores"]

Array = Any


def confusion_matrix(
    predictions: Array,
    labels: Array,
    num_classes: int,
    *,
    ignore_label: int | None = 255,
    weights: Array | None = None,
) -> Array:
    """The ``(K, K)`` int32 confusion matrix (rows true, columns predicted) of a batch.

    Args:
      predictions: ``(N, H, W)`` predicted classes.
      labels: ``(N, H, W)`` true classes in ``[0, K)``, or ``ignore_label``.
      num_classes: ``K``.
      ignore_label: pixels with this label are not counted (None: none ignored).
      weights: optional ``(N,)`` example weights (0 for padding examples, else 1).

    Returns:
      int32 ``(K, K)`` counts.

    Raises:
      ValueError: if the shapes differ, or (for concrete arrays) a label is neither in
        ``[0, K)`` nor ``ignore_label``.
    """
    if tuple(predictions.shape) != tuple(labels.shape):
        raise ValueError(
            f"`predictions` shape {tuple(predictions.shape)} must equal `labels` shape "
            f"{tuple(labels.shape)}"
        )
    if not isinstance(labels, jax.core.Tracer):
        lab = np.asarray(labels)
        bad = (lab < 0) | (lab >= num_classes)
        if ignore_label is not None:
            bad &= lab != ignore_label
        if bad.any():
            extra = "" if ignore_label is None else f" that is not the ignore label {ignore_label}"
            raise ValueError(
                f"`labels` holds class {int(lab[bad][0])} outside [0, {num_classes}){extra}"
            )
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_label is not None:
        valid &= labels != ignore_label
    w = valid.astype(jnp.float32)
    if weights is not None:
        w = w * jnp.asarray(weights, jnp.float32).reshape((-1,) + (1,) * (labels.ndim - 1))
    n = labels.shape[0]
    t = jax.nn.one_hot(jnp.where(valid, labels, 0).reshape(n, -1), num_classes)
    t = t * w.reshape(n, -1, 1)
    p = jax.nn.one_hot(predictions.reshape(n, -1), num_classes)
    counts = jnp.einsum("npt,npq->tq", t, p, precision=jax.lax.Precision.HIGHEST)
    return jnp.round(counts).astype(jnp.int32)


def segmentation_scores(
    confusion: Array, class_names: tuple[str, ...] | None = None
) -> dict[str, float]:
    """Pixel accuracy, mean accuracy, mean IoU and the per-class IoUs of a confusion matrix.

    Args:
      confusion: ``(K, K)`` counts, rows true classes.
      class_names: names for the ``iou/<name>`` keys (default: the class indices).

    Returns:
      ``pixel_accuracy``, ``mean_accuracy``, ``miou`` and ``iou/<k>`` for every class
      (NaN where the class is neither present nor predicted).

    Raises:
      ValueError: if ``confusion`` is not square.
    """
    c = np.asarray(confusion, np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"`confusion` must be a square (K, K) matrix, got shape {c.shape}")
    k = c.shape[0]
    names = class_names or tuple(str(i) for i in range(k))
    tp = np.diag(c)
    true, pred = c.sum(1), c.sum(0)
    union = true + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        acc = np.where(true > 0, tp / np.maximum(true, 1), np.nan)
    total = c.sum()
    out = {
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "mean_accuracy": float(np.nanmean(acc)) if np.any(true > 0) else float("nan"),
        "miou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
    }
    out.update({f"iou/{names[i]}": float(iou[i]) for i in range(k)})
    return out
