"""Size limits, checked in Python before any XLA code is built.

A padding, dilation, stride or output shape can ask for arrays no machine holds
(``padding=10**12``); XLA then fails allocating terabytes, or aborts the process when a
shape's element count overflows int64. Every op and shape helper refuses such sizes with a
``ValueError`` that names the argument and its value:

* ``MAX_DIMENSION = 2**31 - 1``: the longest spatial extent (a padded input, a dilated
  window, an output, a transposed convolution's zero-dilated input). It is the int32
  range: JAX's default integer type without ``jax_enable_x64`` (that of positions computed
  in jitted code and of ``max_pool_with_indices``' indices), and XLA's 32-bit indexing.
* ``MAX_ELEMENTS = 2**40``: the most elements of an op's output or padded input. That is
  4 TiB of float32 (1 TiB of int8), beyond the memory of any one accelerator or host, and
  far below the int64 element count at which XLA aborts instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cnn_jax.ops.padding import effective_kernel_size

__all__ = [
    "MAX_DIMENSION",
    "MAX_ELEMENTS",
    "check_elements",
    "check_extent",
    "check_output",
    "check_transpose_extents",
    "check_window",
]

#: The longest spatial extent an op accepts (the int32 index range).
MAX_DIMENSION = 2**31 - 1
#: The most elements of an op's output or padded input.
MAX_ELEMENTS = 2**40


def check_extent(size: int, what: str, culprit: str) -> None:
    """Raises a ``ValueError`` if a spatial extent exceeds ``MAX_DIMENSION``.

    Args:
      size: the extent.
      what: what it is, e.g. ``"the padded input in spatial dimension 0 (4 + 10 + 10)"``.
      culprit: the argument(s) that made it so, with their values, e.g.
        ``"`padding` (=10)"``.

    Raises:
      ValueError: naming ``culprit``, ``what`` and the bound.
    """
    if size > MAX_DIMENSION:
        raise ValueError(
            f"{culprit} makes {what} {size} long, beyond the {MAX_DIMENSION} (2**31 - 1) "
            "positions a dimension may have (cnn_jax.ops.limits)"
        )


def check_elements(shape: Sequence[int], what: str, culprit: str) -> None:
    """Raises a ``ValueError`` if an array of ``shape`` has more than ``MAX_ELEMENTS``.

    Args:
      shape: the array's shape.
      what: what it is, e.g. ``"the output"``.
      culprit: the argument(s) that made it so, with their values.

    Raises:
      ValueError: naming ``culprit``, ``what``, its shape and the bound.
    """
    count = math.prod(int(v) for v in shape)
    if count > MAX_ELEMENTS:
        raise ValueError(
            f"{culprit} makes {what} of shape {tuple(shape)} hold {count} elements, beyond "
            f"the {MAX_ELEMENTS} (2**40) an op may build (cnn_jax.ops.limits)"
        )


def check_window(
    dim: int, size: int, kernel: int, dilation: int, pads: tuple[int, int], padding: object
) -> None:
    """Checks a window's dilated extent and the padded input along one spatial dimension.

    Args:
      dim: the spatial dimension.
      size: the input size.
      kernel: the window size.
      dilation: the window's dilation.
      pads: the resolved ``(lo, hi)`` padding.
      padding: the ``padding`` argument as given (for the message).

    Raises:
      ValueError: naming ``dilation`` or ``padding``, if either extent exceeds
        ``MAX_DIMENSION``.
    """
    check_extent(
        effective_kernel_size(kernel, dilation),
        f"the window of size {kernel} in spatial dimension {dim}",
        f"`dilation` (={dilation})",
    )
    lo, hi = pads
    check_extent(
        size + lo + hi,
        f"the padded input in spatial dimension {dim} ({size} + {lo} + {hi})",
        f"`padding` (={padding!r})",
    )


def check_output(batch: int, spatial: Sequence[int], channels: int, culprit: str) -> None:
    """Checks an output's spatial extents and its element count ``(N, *spatial, C)``.

    Args:
      batch: ``N``.
      spatial: the output's spatial shape.
      channels: ``C``.
      culprit: the argument that chose the shape, with its value.

    Raises:
      ValueError: naming ``culprit``, beyond ``MAX_DIMENSION`` or ``MAX_ELEMENTS``.
    """
    for dim, size in enumerate(spatial):
        check_extent(size, f"the output in spatial dimension {dim}", culprit)
    check_elements((batch, *spatial, channels), "the output", culprit)


def check_transpose_extents(
    in_size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    stride_name: str = "strides",
) -> None:
    """Raises if a transposed convolution's window or zero-dilated input is too long.

    The zero-dilated input ``s (i' - 1) + 1``, padded with ``d (k - 1)`` on each side, is
    what the ``lax`` call convolves: it must stay within ``MAX_DIMENSION``.

    Args:
      in_size: the transposed convolution's input sizes ``i'``.
      kernel: the kernel sizes.
      stride: the forward convolution's strides.
      dilation: the dilations.
      stride_name: the name of the strides argument, for the message.

    Raises:
      ValueError: naming ``dilation`` or the strides.
    """
    for dim, (ii, kk, ss, dd) in enumerate(zip(in_size, kernel, stride, dilation)):
        eff = effective_kernel_size(kk, dd)
        check_extent(
            eff, f"the window of size {kk} in spatial dimension {dim}", f"`dilation` (={dd})"
        )
        check_extent(
            ss * (max(ii, 1) - 1) + 1 + 2 * (eff - 1),
            f"the zero-dilated, padded input in spatial dimension {dim} "
            f"({ss} x ({ii} - 1) + 1 + 2 x {eff - 1})",
            f"`{stride_name}` (={ss}) with `dilation` (={dd})",
        )
