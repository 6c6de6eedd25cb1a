"""Hand-designed first-layer filters: Sobel and Gabor banks, and a fixed convolution.

``sobel_bank(size)``: the 3x3 Sobel derivative kernels at 0, 45, 90 and 135 degrees and
their negatives (8 kernels: a ReLU after them keeps both edge polarities), zero-padded
to ``size x size``. ``gabor_bank(size, n)``: ``n`` real Gabor kernels
``exp(-(x'^2 + g^2 y'^2) / (2 s^2)) cos(2 pi x' / lambda + phi)`` over
``n / 4`` orientations, two wavelengths and two phases (0, pi/2), each shifted to zero mean
and scaled to unit L2 norm. ``FixedConv`` convolves the luminance (mean over the input
channels) with such a bank: its kernel is a constant, not a parameter, so training
cannot change it; only an optional per-channel bias is learned.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from cnn_jax import ops
from cnn_jax.models._common import Array, check_positive_int

__all__ = ["FILTER_BANKS", "FixedConv", "gabor_bank", "make_bank", "sobel_bank"]

#: The names ``FixedConv.bank`` accepts.
FILTER_BANKS = ("sobel", "gabor")


def sobel_bank(size: int = 3) -> np.ndarray:
    """The 8 Sobel kernels (4 directions, both signs), ``(size, size, 8)`` float32.

    Args:
      size: odd, >= 3; the 3x3 kernels are zero-padded to it.

    Returns:
      Channel ``2 d`` is direction ``d`` (0, 45, 90, 135 degrees), ``2 d + 1`` its negative.

    Raises:
      ValueError: for an even ``size`` or one below 3.
    """
    if not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise ValueError(f"`size` (={size!r}) must be an odd int >= 3")
    gx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    d45 = np.array([[0, 1, 2], [-1, 0, 1], [-2, -1, 0]], np.float32)
    kernels = []
    for k in (gx, d45, gx.T, d45[:, ::-1]):
        kernels += [k, -k]
    p = (size - 3) // 2
    bank = np.stack([np.pad(k, p) for k in kernels], -1)
    return bank.astype(np.float32)


def gabor_bank(size: int = 5, n: int = 32) -> np.ndarray:
    """``n`` zero-mean, unit-norm Gabor kernels, ``(size, size, n)`` float32.

    Args:
      size: the kernel side (>= 3).
      n: a multiple of 4: ``n / 4`` orientations x wavelengths ``(size / 2, size)`` x
        phases ``(0, pi / 2)``.

    Returns:
      The bank.

    Raises:
      ValueError: for ``size < 3`` or ``n`` not a positive multiple of 4.
    """
    if not isinstance(size, int) or size < 3:
        raise ValueError(f"`size` (={size!r}) must be an int >= 3")
    if not isinstance(n, int) or n < 4 or n % 4:
        raise ValueError(f"`n` (={n!r}) must be a positive multiple of 4")
    r = (size - 1) / 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    sigma, gamma = size / 4, 0.5
    out = []
    for theta in np.arange(n // 4) * np.pi / (n // 4):
        xr = xx * np.cos(theta) + yy * np.sin(theta)
        yr = -xx * np.sin(theta) + yy * np.cos(theta)
        envelope = np.exp(-(xr**2 + (gamma * yr) ** 2) / (2 * sigma**2))
        for lam in (size / 2, size):
            for phi in (0.0, np.pi / 2):
                k = envelope * np.cos(2 * np.pi * xr / lam + phi)
                k = k - k.mean()
                out.append(k / np.linalg.norm(k))
    return np.stack(out, -1).astype(np.float32)


def make_bank(bank: str, size: int, n: int) -> np.ndarray:
    """``sobel_bank(size)`` or ``gabor_bank(size, n)`` by name.

    Raises:
      ValueError: for a name not in ``FILTER_BANKS``.
    """
    if bank == "sobel":
        return sobel_bank(size)
    if bank == "gabor":
        return gabor_bank(size, n)
    raise ValueError(f"`bank` (={bank!r}) must be one of {FILTER_BANKS}")


class FixedConv(nn.Module):
    """A convolution of the luminance with a fixed (non-trainable) filter bank.

    Attributes:
      bank: ``'sobel'`` (8 output channels) or ``'gabor'`` (``features`` channels).
      kernel_size: the kernel side.
      features: the Gabor bank's size (a multiple of 4); ignored for Sobel.
      padding: as ``cnn_jax.ops.conv``.
      use_bias: learn one bias per output channel.
      dtype: computation dtype.
    """

    bank: str = "gabor"
    kernel_size: int = 5
    features: int = 32
    padding: Any = "SAME"
    use_bias: bool = True
    dtype: Any = None

    def __post_init__(self) -> None:
        make_bank(self.bank, self.kernel_size, check_positive_int(self.features, "features"))
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Convolves ``mean(x, channels)`` with the bank.

        Args:
          x: ``(N, H, W, C)``.

        Returns:
          ``(N, H', W', channels of the bank)``.
        """
        kernel = make_bank(self.bank, self.kernel_size, self.features)[:, :, None, :]
        dtype = self.dtype or jnp.result_type(x.dtype, jnp.float32)
        lum = jnp.mean(jnp.asarray(x, dtype), axis=-1, keepdims=True)
        y = ops.conv(lum, jnp.asarray(kernel, dtype), padding=self.padding)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (kernel.shape[-1],)).astype(dtype)
        return y
