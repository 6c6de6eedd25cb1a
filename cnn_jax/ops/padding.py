"""The one padding resolver every op uses.

Padding is always turned into explicit ``(lo, hi)`` amounts per spatial dimension
as a function of the *effective* kernel size ``d * (k - 1) + 1`` (as in dm-haiku's
``pad.py``), so that ``'CAUSAL'`` and ``'FULL'`` are right for every dilation.

Vocabulary (case-insensitive strings):

* ``'VALID'``: no padding.
* ``'SAME'``: output size ``ceil(i / s)``; total padding
  ``max((ceil(i / s) - 1) * s + d * (k - 1) + 1 - i, 0)``, split with the smaller half
  before (the TensorFlow/XLA convention, so results equal ``lax`` ``'SAME'``).
* ``'FULL'``: ``d * (k - 1)`` on both sides; at stride 1 the output has
  ``i + d * (k - 1)`` positions (Dumoulin & Visin 2016, relationship 4).
* ``'CAUSAL'``: all ``d * (k - 1)`` before, none after, so output ``t`` depends only
  on inputs ``<= t`` (WaveNet, van den Oord et al. 2016).
* an int ``p``: ``(p, p)`` on every spatial dimension;
* a sequence of ints: symmetric padding per dimension;
* a sequence of ``(lo, hi)`` pairs, one per dimension.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnn_jax.ops._validate import as_tuple, is_int

__all__ = [
    "PADDING_STRINGS",
    "PaddingLike",
    "Pairs",
    "effective_kernel_size",
    "explicit_padding",
    "normalize_padding_string",
    "resolve_padding",
]

PaddingLike = str | int | Sequence[int] | Sequence[tuple[int, int]]
Pairs = tuple[tuple[int, int], ...]

PADDING_STRINGS = ("SAME", "VALID", "FULL", "CAUSAL")


def effective_kernel_size(kernel: int, dilation: int) -> int:
    """Returns ``d * (k - 1) + 1``, the extent of a dilated kernel (Dumoulin & Visin, §5.1)."""
    return dilation * (kernel - 1) + 1


def normalize_padding_string(padding: str, name: str = "padding") -> str:
    """Upper-cases a padding string and checks it is known.

    Args:
      padding: the string given by the user.
      name: the argument's name, for the error message.

    Returns:
      One of ``PADDING_STRINGS``.

    Raises:
      ValueError: for an unknown string.
    """
    mode = padding.upper()
    if mode not in PADDING_STRINGS:
        raise ValueError(
            f"`{name}` (={padding!r}) must be one of {', '.join(map(repr, PADDING_STRINGS))}, "
            "an int, a sequence of ints or a sequence of (lo, hi) pairs"
        )
    return mode


def explicit_padding(padding: PaddingLike, n: int, name: str = "padding") -> Pairs | None:
    """Returns the ``(lo, hi)`` pairs of a numeric padding, or ``None`` for a string.

    Args:
      padding: any padding accepted by the ops.
      n: the number of spatial dimensions.
      name: the argument's name, for error messages.

    Returns:
      ``n`` pairs of non-negative ints, or ``None`` if ``padding`` is a string (whose
      amounts depend on the input size; see ``resolve_padding``).

    Raises:
      TypeError: if ``padding`` is of no accepted type.
      ValueError: for a wrong number of entries or a negative amount.
    """
    if isinstance(padding, str):
        normalize_padding_string(padding, name)
        return None
    if is_int(padding):
        if padding < 0:
            raise ValueError(f"`{name}` (={padding}) must be non-negative")
        return ((int(padding), int(padding)),) * n
    if not isinstance(padding, Sequence):
        raise TypeError(
            f"`{name}` must be a string, an int, a sequence of ints or a sequence of "
            f"(lo, hi) pairs, got {padding!r}"
        )
    entries = list(padding)
    if all(is_int(p) for p in entries):
        sym = as_tuple(entries, n, name, minimum=0)
        return tuple((p, p) for p in sym)
    pairs = []
    for p in entries:
        if not (
            isinstance(p, Sequence)
            and not isinstance(p, str)
            and len(p) == 2
            and all(is_int(v) for v in p)
        ):
            raise TypeError(
                f"`{name}` (={padding!r}) must be a sequence of ints or of (lo, hi) pairs "
                "of ints, not a mix"
            )
        pairs.append((int(p[0]), int(p[1])))
    if len(pairs) != n:
        raise ValueError(
            f"`{name}` (={padding!r}) must have one (lo, hi) pair per spatial dimension (={n})"
        )
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(f"`{name}` (={padding!r}) must be non-negative")
    return tuple(pairs)


def resolve_padding(
    padding: PaddingLike,
    in_size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    name: str = "padding",
) -> Pairs:
    """Turns any padding into explicit ``(lo, hi)`` pairs, one per spatial dimension.

    Args:
      padding: a padding string, int, sequence of ints or sequence of pairs.
      in_size: the spatial input sizes (used by ``'SAME'`` only).
      kernel: the kernel (window) sizes.
      stride: the strides.
      dilation: the kernel dilations.
      name: the argument's name, for error messages.

    Returns:
      A tuple of ``(lo, hi)`` pairs of non-negative ints.

    Raises:
      TypeError, ValueError: for padding of an unknown kind or a wrong length.
    """
    n = len(kernel)
    pairs = explicit_padding(padding, n, name)
    if pairs is not None:
        return pairs
    mode = normalize_padding_string(padding, name)  # type: ignore[arg-type]
    eff = [effective_kernel_size(k, d) for k, d in zip(kernel, dilation)]
    if mode == "VALID":
        return ((0, 0),) * n
    if mode == "FULL":
        return tuple((e - 1, e - 1) for e in eff)
    if mode == "CAUSAL":
        return tuple((e - 1, 0) for e in eff)
    out = []  # SAME
    for i, e, s in zip(in_size, eff, stride):
        o = -(-i // s)
        total = max((o - 1) * s + e - i, 0)
        out.append((total // 2, total - total // 2))
    return tuple(out)
