"""Stochastic pooling (Zeiler & Fergus, ICLR 2013). Layouts as in ``cnn_jax.ops.pool``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnn_jax.ops._pool_common import accumulator, as_float, jit, patches, window_sum
from cnn_jax.ops.geometry import Geometry, check_bool, pool_geometry
from cnn_jax.ops.padding import PaddingLike

__all__ = ["stochastic_pool"]

Array = Any
IntOrSeq = int | Sequence[int]


def stochastic_pool(
    x: Array,
    window: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: PaddingLike = "VALID",
    *,
    rng: Array | None = None,
    train: bool,
    ceil_mode: bool = False,
    dilation: IntOrSeq = 1,
) -> Array:
    """Stochastic pooling (Zeiler & Fergus, ICLR 2013).

    With ``a`` the activations of a window and ``p_i = a_i / sum_j a_j``:

    * ``train=True``: one activation per window, drawn with probability ``p_i``
      (independently for every window, sample and channel); an all-zero window gives
      0. The gradient goes to the drawn activation.
    * ``train=False``: the probability-weighted average ``sum_i p_i a_i =
      sum_i a_i^2 / sum_i a_i`` (0 for an all-zero window).

    The method is defined for non-negative (post-ReLU) activations: negative inputs are
    clipped to 0, i.e. ``stochastic_pool(x) == stochastic_pool(relu(x))`` (with the
    gradient of the clip). Padding and the ceil-mode overhang are zeros, which are
    never drawn.

    Args:
      x: input of shape ``(N, *spatial, C)``; integer inputs become the default float.
      window: window size, an int or one per spatial dimension.
      strides: the strides; defaults to ``window``.
      padding: any padding of ``cnn_jax.ops.padding``.
      rng: a ``jax.random`` key; required when ``train``.
      train: draw (``True``) or take the expectation-like weighted average (``False``).
      ceil_mode: compute the output size with ``ceil`` instead of ``floor`` (PyTorch).
      dilation: spacing of the window's taps.

    Returns:
      An array ``(N, *pool_output_size(spatial, ...), C)`` of a floating dtype.

    Raises:
      TypeError: for a non-bool ``train`` or arguments of the wrong type.
      ValueError: without ``rng`` when ``train``, or as ``avg_pool``.
    """
    train = check_bool(train, "train")
    g = pool_geometry(x, window, strides, padding, dilation, ceil_mode)
    if train and rng is None:
        raise ValueError("`rng` (=None) must be a jax.random key when `train` is True")
    if train and not (
        isinstance(rng, jax.Array)
        and (jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) or rng.dtype == jnp.uint32)
    ):
        raise TypeError(f"`rng` must be a jax.random key, got {rng!r}")
    x = as_float(x)
    if not train:
        return _stochastic_eval(x, g=g)
    return _stochastic_train(x, rng, g=g)


@jit("g")
def _stochastic_eval(x: Array, g: Geometry) -> Array:
    a = jax.nn.relu(x.astype(accumulator(x.dtype)))
    s1 = window_sum(a, g)
    s2 = window_sum(a * a, g)
    positive = s1 > 0
    return jnp.where(positive, s2 / jnp.where(positive, s1, 1.0), 0.0).astype(x.dtype)


@jit("g")
def _stochastic_train(x: Array, rng: Array, g: Geometry) -> Array:
    a = jax.nn.relu(x.astype(accumulator(x.dtype)))
    cells = patches(a, g, 0.0)  # (N, *out, C, K)
    weights = lax.stop_gradient(cells)
    # Inverse-CDF sampling with one uniform per window: the first tap whose cumulative
    # weight exceeds u * total. Zero-weight taps are never chosen: their cumulative
    # weight equals the previous one; the clip guards against rounding of u * total.
    cum = jnp.cumsum(weights, axis=-1)
    # (drawn flat: XLA compiles threefry for a 1-D shape much faster than for an N-D one)
    u = jax.random.uniform(rng, (math.prod(cum.shape[:-1]),), cum.dtype).reshape(cum.shape[:-1])
    choice = jnp.sum(cum <= (u * cum[..., -1])[..., None], axis=-1)
    positive = weights > 0
    k = weights.shape[-1]
    last_positive = k - 1 - jnp.argmax(positive[..., ::-1], axis=-1)
    choice = jnp.minimum(choice, last_positive)
    drawn = jnp.take_along_axis(cells, choice[..., None], axis=-1)[..., 0]
    return drawn.astype(x.dtype)
