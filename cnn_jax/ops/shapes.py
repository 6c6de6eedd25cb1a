"""Output-size, padding and receptive-field arithmetic (public).

The formulas are those of Dumoulin & Visin, "A guide to convolution arithmetic
for deep learning" (2016), written for any padding, stride and dilation:

* convolution: ``o = floor((i + p_lo + p_hi - d * (k - 1) - 1) / s) + 1``
  (relationship 6 with the dilated kernel of §5.1);
* transposed convolution: ``o' = s * (i' - 1) + a + d * (k - 1) + 1 - (p_lo + p_hi)``
  (relationship 14) where ``a`` is the output padding;
* pooling: as convolution, with PyTorch's ``ceil_mode`` rounding.

Every function takes ints for one spatial dimension, or sequences (ints broadcast)
for several; it returns an int in the first case and a tuple in the second. A padded
input, dilated window or output longer than ``cnn_jax.ops.limits.MAX_DIMENSION``
(``2**31 - 1``) is a ``ValueError`` naming the argument that makes it so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from cnn_jax.ops._validate import as_tuple, is_int, show
from cnn_jax.ops.limits import check_extent, check_transpose_extents, check_window
from cnn_jax.ops.padding import (
    PaddingLike,
    Pairs,
    effective_kernel_size,
    explicit_padding,
    normalize_padding_string,
    resolve_padding,
)

__all__ = [
    "ReceptiveField",
    "check_output_padding",
    "conv_output_size",
    "conv_transpose_output_size",
    "effective_kernel_size",
    "padding_amounts",
    "pool_output_size",
    "receptive_field",
]

IntOrSeq = int | Sequence[int]


def _num_dims(*values: Any) -> int | None:
    """Returns the length shared by the sequence arguments, or None if all are ints."""
    n = None
    for v in values:
        if isinstance(v, Sequence) and not isinstance(v, str):
            n = len(v) if n is None else n
    return n


def _broadcast(n: int, **kwargs: Any) -> list[tuple[int, ...]]:
    out = []
    for name, value in kwargs.items():
        out.append(as_tuple(value, n, name, minimum=0 if name == "output_padding" else 1))
    return out


def _unwrap(values: tuple[int, ...], scalar: bool) -> int | tuple[int, ...]:
    return values[0] if scalar else values


def padding_amounts(
    mode: PaddingLike,
    in_size: IntOrSeq,
    kernel: IntOrSeq,
    stride: IntOrSeq = 1,
    dilation: IntOrSeq = 1,
) -> Pairs:
    """Returns the ``(lo, hi)`` padding of every spatial dimension, as every op uses it.

    Args:
      mode: ``'SAME'``, ``'VALID'``, ``'FULL'``, ``'CAUSAL'``, an int, a sequence of ints,
        or a sequence of ``(lo, hi)`` pairs (see ``cnn_jax.ops.padding``).
      in_size: the input size(s).
      kernel: the kernel size(s).
      stride: the stride(s).
      dilation: the dilation(s).

    Returns:
      A tuple with one ``(lo, hi)`` pair per spatial dimension (a 1-tuple for ints).

    Raises:
      TypeError, ValueError: for arguments of the wrong kind, length or sign.
    """
    n = _num_dims(in_size, kernel, stride, dilation) or 1
    if (
        n == 1
        and isinstance(mode, Sequence)
        and not isinstance(mode, str)
        and mode
        and not all(is_int(m) for m in mode)
    ):
        n = len(mode)  # e.g. ((1, 2),) or [(1, 2), (0, 0)] with scalar sizes
    i, k, s, d = _broadcast(n, in_size=in_size, kernel=kernel, stride=stride, dilation=dilation)
    pads = resolve_padding(mode, i, k, s, d)
    for dim, (ii, kk, dd, p) in enumerate(zip(i, k, d, pads)):
        check_window(dim, ii, kk, dd, p, mode)
    return pads


def conv_output_size(
    in_size: IntOrSeq,
    kernel: IntOrSeq,
    stride: IntOrSeq = 1,
    padding: PaddingLike = "VALID",
    dilation: IntOrSeq = 1,
) -> int | tuple[int, ...]:
    """Output size of a convolution: ``floor((i + p_lo + p_hi - d(k-1) - 1) / s) + 1``.

    Args:
      in_size: the input size(s).
      kernel: the kernel size(s).
      stride: the stride(s).
      padding: any padding (see ``padding_amounts``).
      dilation: the dilation(s).

    Returns:
      An int for scalar sizes, else a tuple with one size per spatial dimension.

    Raises:
      ValueError: if the (dilated) kernel is larger than the padded input.
    """
    scalar = _num_dims(in_size, kernel, stride, dilation) is None
    n = _num_dims(in_size, kernel, stride, dilation) or 1
    i, k, s, d = _broadcast(n, in_size=in_size, kernel=kernel, stride=stride, dilation=dilation)
    pads = resolve_padding(padding, i, k, s, d)
    out = []
    for dim, (ii, kk, ss, dd, (lo, hi)) in enumerate(zip(i, k, s, d, pads)):
        check_window(dim, ii, kk, dd, (lo, hi), padding)
        eff = effective_kernel_size(kk, dd)
        if ii + lo + hi < eff:
            raise ValueError(
                f"kernel of size {kk} (dilated to {eff}) is larger than the padded input "
                f"({ii} + {lo} + {hi} = {ii + lo + hi}); use a smaller kernel or more padding"
            )
        out.append((ii + lo + hi - eff) // ss + 1)
    return _unwrap(tuple(out), scalar)


def conv_transpose_output_size(
    in_size: IntOrSeq,
    kernel: IntOrSeq,
    stride: IntOrSeq = 1,
    padding: PaddingLike = "VALID",
    output_padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
) -> int | tuple[int, ...]:
    """Output size of a transposed convolution (Dumoulin & Visin, relationship 14).

    ``o' = s (i' - 1) + a + d (k - 1) + 1 - (p_lo + p_hi)``, where ``p`` is the padding of
    the *forward* convolution and ``a`` the output padding. For ``'SAME'`` the forward
    padding depends on the forward input, i.e. on ``o'`` itself: every ``o'`` in
    ``(s (i' - 1), s i']`` maps to ``i'``, and this function returns ``s * i'`` (the
    convention of Keras and Flax); pass ``output_shape`` to ``conv_transpose`` for
    the others.

    Args:
      in_size: the transposed conv's input size(s) ``i'`` (the forward conv's output).
      kernel: the kernel size(s).
      stride: the stride(s) of the forward convolution.
      padding: the forward convolution's padding.
      output_padding: ``a``, extra size added on the high side; must be smaller than
        the stride or the dilation (as in PyTorch). Must be 0 with ``'SAME'``.
      dilation: the dilation(s).

    Returns:
      An int for scalar sizes, else a tuple with one size per spatial dimension.

    Raises:
      ValueError: for an ``output_padding`` that is too large, or a non-positive result.
    """
    n_or_none = _num_dims(in_size, kernel, stride, dilation, output_padding)
    n = n_or_none or 1
    i, k, s, a, d = _broadcast(
        n,
        in_size=in_size,
        kernel=kernel,
        stride=stride,
        output_padding=output_padding,
        dilation=dilation,
    )
    check_output_padding(a, s, d)
    check_transpose_extents(i, k, s, d, "stride")
    pads = explicit_padding(padding, n)
    if pads is None and normalize_padding_string(padding) == "SAME":  # type: ignore[arg-type]
        if any(a):
            raise ValueError(
                f"`output_padding` (={show(output_padding)}) must be 0 with 'SAME' padding; "
                "pass `output_shape` to choose among the sizes that 'SAME' maps to one size"
            )
        for dim, (ii, ss) in enumerate(zip(i, s)):
            check_extent(ii * ss, f"the output in spatial dimension {dim}", f"`stride` (={ss})")
        return _unwrap(tuple(ii * ss for ii, ss in zip(i, s)), n_or_none is None)
    if pads is None:  # VALID, FULL, CAUSAL do not depend on the input size
        pads = resolve_padding(padding, i, k, s, d)
    out = []
    for ii, kk, ss, aa, dd, (lo, hi) in zip(i, k, s, a, d, pads):
        o = ss * (ii - 1) + aa + effective_kernel_size(kk, dd) - (lo + hi)
        if o < 1:
            raise ValueError(
                f"transposed convolution output size would be {o} (input {ii}, kernel {kk}, "
                f"stride {ss}, dilation {dd}, padding ({lo}, {hi}), output_padding {aa}); "
                "the padding is larger than the output"
            )
        check_extent(o, f"the output in spatial dimension {len(out)}", f"`stride` (={ss})")
        out.append(o)
    return _unwrap(tuple(out), n_or_none is None)


def check_output_padding(
    output_padding: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> None:
    """Raises unless every output padding is smaller than its stride or its dilation.

    Args:
      output_padding: per-dimension output padding.
      stride: per-dimension strides.
      dilation: per-dimension dilations.

    Raises:
      ValueError: naming the offending values.
    """
    for a, s, d in zip(output_padding, stride, dilation):
        if a < 0 or a >= max(s, d):
            raise ValueError(
                f"`output_padding` (={tuple(output_padding)!r}) must be non-negative and "
                f"smaller than either `strides` (={tuple(stride)!r}) or `dilation` "
                f"(={tuple(dilation)!r})"
            )


def pool_output_size(
    in_size: IntOrSeq,
    window: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: PaddingLike = "VALID",
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> int | tuple[int, ...]:
    """Output size of a pooling window, with PyTorch's ``ceil_mode``.

    With ``ceil_mode=False`` this is ``conv_output_size``. With ``ceil_mode=True`` the
    division rounds up, ``o = ceil((i + p_lo + p_hi - d(w-1) - 1) / s) + 1``, except that a
    last window that would start in the high padding (``(o - 1) s >= i + p_lo``) is
    dropped, as in PyTorch and Caffe.

    Args:
      in_size: the input size(s).
      window: the window size(s).
      stride: the stride(s); defaults to the window.
      padding: any padding.
      dilation: the window dilation(s).
      ceil_mode: round the division up instead of down.

    Returns:
      An int for scalar sizes, else a tuple.

    Raises:
      ValueError: if the window is larger than the padded input.
    """
    stride = window if stride is None else stride
    scalar = _num_dims(in_size, window, stride, dilation) is None
    floor = conv_output_size(in_size, window, stride, padding, dilation)
    if not ceil_mode:
        return floor
    n = _num_dims(in_size, window, stride, dilation) or 1
    i, k, s, d = _broadcast(n, in_size=in_size, kernel=window, stride=stride, dilation=dilation)
    pads = resolve_padding(padding, i, k, s, d)
    out = []
    for ii, kk, ss, dd, (lo, hi) in zip(i, k, s, d, pads):
        span = ii + lo + hi - effective_kernel_size(kk, dd)
        o = -(-span // ss) + 1
        if (o - 1) * ss >= ii + lo:
            o -= 1
        out.append(o)
    return _unwrap(tuple(out), scalar)


class ReceptiveField(NamedTuple):
    """Receptive field of the units of the last layer of a stack, per spatial dimension.

    Attributes:
      size: how many input positions one output unit sees (``r``).
      jump: the distance in input positions between adjacent output units (the
        effective stride, ``j``).
      start: the input coordinate of the centre of the first output unit's field, with
        input pixel ``t`` centred at ``t`` (can be negative or fractional with padding
        and even kernels).
      out_size: the output size per dimension, or None when no ``in_size`` was given.
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]
    out_size: tuple[int, ...] | None


def receptive_field(
    layers: Sequence[Mapping[str, Any]], in_size: IntOrSeq | None = None
) -> ReceptiveField:
    """Receptive field, jump and centre of the first unit for a stack of conv/pool layers.

    With ``j_0 = 1, r_0 = 1, c_0 = 0``, each layer of effective kernel ``e = d(k-1)+1``,
    stride ``s`` and low padding ``p_lo`` gives ``j = j_in s``, ``r = r_in + (e - 1) j_in``
    and ``c = c_in + ((e - 1) / 2 - p_lo) j_in`` (Dumoulin & Visin §2; Araujo et al.,
    "Computing receptive fields of convolutional neural networks", Distill 2019).

    Args:
      layers: one mapping per layer with key ``kernel`` (or ``window``) and optional
        ``stride`` (or ``strides``), ``padding``, ``dilation``; ints broadcast over
        dimensions.
      in_size: the input size(s); needed if a layer uses ``'SAME'`` padding, and gives
        ``out_size`` in the result.

    Returns:
      A ``ReceptiveField`` with one entry per spatial dimension.

    Raises:
      ValueError: for a layer without a kernel, an unknown key, both ``kernel`` and
        ``window`` or both ``stride`` and ``strides``, or 'SAME' padding without
        ``in_size``.
    """
    if not layers:
        raise ValueError("`layers` must hold at least one layer, got an empty sequence")
    allowed = {"kernel", "window", "stride", "strides", "padding", "dilation"}
    dims = []
    for idx, layer in enumerate(layers):
        if not isinstance(layer, Mapping):
            raise TypeError(
                f"`layers[{idx}]` must be a mapping such as dict(kernel=3), got {layer!r}"
            )
        unknown = set(layer) - allowed
        if unknown:
            raise ValueError(
                f"`layers[{idx}]` has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        if "kernel" not in layer and "window" not in layer:
            raise ValueError(f"`layers[{idx}]` (={dict(layer)!r}) needs a `kernel` or `window`")
        for a, b in (("kernel", "window"), ("stride", "strides")):
            if a in layer and b in layer:
                raise ValueError(
                    f"`layers[{idx}]` (={dict(layer)!r}) gives both `{a}` and `{b}`: "
                    "they are the same setting, give one"
                )
        for key in ("kernel", "window", "stride", "strides", "dilation"):
            n = _num_dims(layer.get(key))
            if n is not None:
                dims.append(n)
        pad = layer.get("padding")
        if isinstance(pad, Sequence) and not isinstance(pad, str):
            dims.append(len(pad))
    if in_size is not None and _num_dims(in_size) is not None:
        dims.append(_num_dims(in_size))
    n = dims[0] if dims else 1
    if any(m != n for m in dims):
        raise ValueError(
            f"`layers` mix different numbers of spatial dimensions: {sorted(set(dims))}"
        )

    size = [1] * n
    jump = [1] * n
    start = [0.0] * n
    cur = list(as_tuple(in_size, n, "in_size")) if in_size is not None else None
    for idx, layer in enumerate(layers):
        k = as_tuple(layer.get("kernel", layer.get("window")), n, f"layers[{idx}].kernel")
        s = as_tuple(layer.get("stride", layer.get("strides", 1)), n, f"layers[{idx}].stride")
        d = as_tuple(layer.get("dilation", 1), n, f"layers[{idx}].dilation")
        pad = layer.get("padding", 0)
        if isinstance(pad, str) and normalize_padding_string(pad) == "SAME" and cur is None:
            raise ValueError(
                f"`layers[{idx}]` uses 'SAME' padding, which depends on the input "
                "size: pass `in_size`"
            )
        pairs = resolve_padding(pad, cur or [1] * n, k, s, d, name=f"layers[{idx}].padding")
        for t in range(n):
            e = effective_kernel_size(k[t], d[t])
            size[t] += (e - 1) * jump[t]
            start[t] += ((e - 1) / 2 - pairs[t][0]) * jump[t]
            jump[t] *= s[t]
        if cur is not None:
            cur = list(conv_output_size(tuple(cur), k, s, pairs, d))  # type: ignore[arg-type]
    return ReceptiveField(
        tuple(size), tuple(jump), tuple(start), tuple(cur) if cur is not None else None
    )
