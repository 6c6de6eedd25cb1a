"""Which pixels a prediction depends on: gradient saliency and occlusion sensitivity.

* :func:`saliency` (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional
  Networks", section 3.1): the gradient of one class score with respect to the input
  image; the map is its largest absolute value over the colour channels.
* :func:`occlusion` (Zeiler & Fergus 2014, section 4.2): a grey square slid over the
  image; the map holds, for every position of the square, the probability of the
  class (or the score) the network gives the occluded image.

Both take ``score_fn(images) -> (N, num_classes)`` scores (logits, say
``lambda x: model.apply(variables, x)[0]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["occlusion", "occlusion_positions", "saliency"]

Array = Any
ScoreFn = Callable[[Array], Array]


def _targets(target: Any, n: int) -> Array:
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer) or t.ndim > 1 or (t.ndim == 1 and t.shape[0] != n):
        raise ValueError(f"`target` (={target!r}) must be an int or {n} ints, one per image")
    return jnp.broadcast_to(jnp.asarray(t, jnp.int32), (n,))


def _check_images(x: Any) -> Array:
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"`x` must be (N, H, W, C) images, got shape {tuple(x.shape)}")
    return x


def saliency(score_fn: ScoreFn, x: Array, target: Any) -> tuple[Array, Array]:
    """The gradient of the class score ``target`` with respect to ``x``.

    Args:
      score_fn: images ``(N, H, W, C)`` -> scores ``(N, K)``; each image's scores must
        depend on that image only (evaluation mode: no batch statistics).
      x: the images.
      target: the class, an int or one per image.

    Returns:
      ``(map, gradient)``: ``(N, H, W)`` the largest absolute gradient over channels,
      and the ``(N, H, W, C)`` gradient itself.

    Raises:
      ValueError: for ``x`` that is not ``(N, H, W, C)`` or a bad ``target``.
    """
    x = _check_images(x)
    t = _targets(target, x.shape[0])

    def total(xx: Array) -> Array:
        scores = score_fn(xx)
        return jnp.sum(jnp.take_along_axis(scores, t[:, None], axis=1))

    grad = jax.grad(total)(x)
    return jnp.max(jnp.abs(grad), axis=-1), grad


def occlusion_positions(size: int, patch: int, stride: int) -> list[int]:
    """The square's top (or left) edges along one side: every ``stride``, and flush with the end."""
    last = size - patch
    pos = list(range(0, last + 1, stride))
    if pos[-1] != last:
        pos.append(last)
    return pos


def occlusion(
    score_fn: ScoreFn,
    x: Array,
    target: Any,
    *,
    patch: int = 8,
    stride: int = 4,
    value: float | Array = 0.0,
    probabilities: bool = True,
    batch_size: int = 256,
) -> Array:
    """The class probability (or score) of ``target`` as a square hides each part of ``x``.

    Args:
      score_fn: images -> ``(N, K)`` scores (logits).
      x: ``(N, H, W, C)`` images.
      target: the class, an int or one per image.
      patch: the square's side in pixels.
      stride: its step; the last row and column of positions touch the far edges
        (:func:`occlusion_positions`).
      value: what the square holds (the paper's grey: the data's mean, 0 after
        standardization), a scalar or one per channel.
      probabilities: softmax probabilities (the paper) rather than raw scores.
      batch_size: occluded images per call of ``score_fn``.

    Returns:
      ``(N, rows, cols)``: entry ``[n, i, j]`` is for the square whose top-left corner
      is at ``(occlusion_positions(H)[i], occlusion_positions(W)[j])``.

    Raises:
      ValueError: for bad images, target, ``patch``, ``stride`` or ``batch_size``.
    """
    x = _check_images(x)
    n, h, w, _ = x.shape
    t = _targets(target, n)
    for name, v, hi in (("patch", patch, min(h, w)), ("stride", stride, None)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1 or (hi and v > hi):
            raise ValueError(f"`{name}` (={v!r}) must be an int in [1, {hi or 'inf'}]")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` (={batch_size!r}) must be a positive int")
    rows, cols = occlusion_positions(h, patch, stride), occlusion_positions(w, patch, stride)
    corners = np.array([(r, c) for r in rows for c in cols], np.int32)
    yy, xx = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    masks = (
        (yy >= corners[:, :1, None])
        & (yy < corners[:, :1, None] + patch)
        & (xx >= corners[:, 1:, None])
        & (xx < corners[:, 1:, None] + patch)
    )  # (P, H, W)
    fill = jnp.broadcast_to(jnp.asarray(value, x.dtype), (x.shape[-1],))

    @jax.jit
    def score(images: Array, m: Array, cls: Array) -> Array:
        occluded = jnp.where(m[..., None], fill, images)
        s = score_fn(occluded)
        if probabilities:
            s = jax.nn.softmax(s, axis=-1)
        return jnp.take_along_axis(s, cls[:, None], axis=1)[:, 0]

    out = np.zeros((n, len(corners)), np.float32)
    flat = [(i, p) for i in range(n) for p in range(len(corners))]
    for start in range(0, len(flat), batch_size):
        chunk = flat[start : start + batch_size]
        pad = batch_size - len(chunk) if len(flat) > batch_size else 0
        img_idx = np.array([i for i, _ in chunk] + [0] * pad)
        pos_idx = np.array([p for _, p in chunk] + [0] * pad)
        vals = np.asarray(score(x[img_idx], jnp.asarray(masks[pos_idx]), t[img_idx]))
        for (i, p), v in zip(chunk, vals[: len(chunk)], strict=True):
            out[i, p] = v
    return jnp.asarray(out.reshape(n, len(rows), len(cols)))
