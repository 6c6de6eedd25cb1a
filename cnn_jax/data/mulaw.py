r"""Mu-law companding and 8-bit quantization of audio (ITU-T G.711; WaveNet §2.2).

Companding: :math:`F(x) = \operatorname{sign}(x) \ln(1 + \mu |x|) / \ln(1 + \mu)` for
:math:`x \in [-1, 1]`, with :math:`\mu = 255`; quantization maps :math:`F(x) \in [-1, 1]`
to the nearest of the ``mu + 1`` levels ``2 q / mu - 1``, ``q = 0 .. mu``:
``q = floor((F(x) + 1) / 2 * mu + 1/2)``. Decoding inverts both:
:math:`F^{-1}(y) = \operatorname{sign}(y) ((1 + \mu)^{|y|} - 1) / \mu` of the level
``y = 2 q / mu - 1``. So ``encode(decode(q)) == q`` for every code and
``decode(encode(x))`` is within half a quantization step (in the companded domain) of
``x``; silence (``x = 0``) is code ``128`` (:data:`SILENCE` for ``mu = 255``).
Values outside ``[-1, 1]`` are clipped first.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

__all__ = ["MU", "SILENCE", "mu_law_compand", "mu_law_decode", "mu_law_encode", "mu_law_expand"]

Array = Any

#: WaveNet's mu: 256 levels (8 bits).
MU = 255
#: The code of silence (``x = 0``) for ``mu = 255``.
SILENCE = 128


def _check_mu(mu: int) -> int:
    if isinstance(mu, bool) or not isinstance(mu, int) or mu < 1:
        raise ValueError(f"`mu` (={mu!r}) must be a positive int")
    return mu


def mu_law_compand(x: Array, mu: int = MU) -> Array:
    """``F(x)``: the companded signal in ``[-1, 1]`` (``x`` clipped to ``[-1, 1]``).

    Raises:
      TypeError: naming ``x`` if it is not floating point.
      ValueError: for a ``mu`` that is not a positive int.
    """
    mu = _check_mu(mu)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`x` must be floating-point audio in [-1, 1], got dtype {x.dtype}")
    x = jnp.clip(x, -1.0, 1.0)
    return jnp.sign(x) * jnp.log1p(mu * jnp.abs(x)) / jnp.log1p(jnp.asarray(mu, x.dtype))


def mu_law_expand(y: Array, mu: int = MU) -> Array:
    """``F^{-1}(y)`` for companded values ``y`` in ``[-1, 1]`` (clipped)."""
    mu = _check_mu(mu)
    y = jnp.clip(jnp.asarray(y), -1.0, 1.0)
    return jnp.sign(y) * jnp.expm1(jnp.abs(y) * jnp.log1p(jnp.asarray(mu, y.dtype))) / mu


def mu_law_encode(x: Array, mu: int = MU) -> Array:
    """Audio in ``[-1, 1]`` to int32 codes ``0 .. mu`` (the module docstring's rule).

    Args:
      x: floating-point audio of any shape.
      mu: the companding parameter; ``mu + 1`` levels.

    Returns:
      int32 codes of the shape of ``x``.

    Raises:
      TypeError: naming ``x`` if it is not floating point.
      ValueError: for a ``mu`` that is not a positive int.
    """
    f = mu_law_compand(x, mu)
    q = jnp.floor((f + 1.0) / 2.0 * mu + 0.5).astype(jnp.int32)
    return jnp.clip(q, 0, mu)


def mu_law_decode(q: Array, mu: int = MU, dtype: Any = jnp.float32) -> Array:
    """Codes ``0 .. mu`` back to audio in ``[-1, 1]`` (of ``dtype``).

    Raises:
      TypeError: naming ``q`` if it is not an integer array.
      ValueError: for a ``mu`` that is not a positive int.
    """
    mu = _check_mu(mu)
    q = jnp.asarray(q)
    if not jnp.issubdtype(q.dtype, jnp.integer):
        raise TypeError(f"`q` must hold integer mu-law codes 0..{mu}, got dtype {q.dtype}")
    y = 2.0 * q.astype(dtype) / mu - 1.0
    return mu_law_expand(y, mu)
