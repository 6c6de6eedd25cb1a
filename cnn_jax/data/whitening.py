"""Whitening (PCA, ZCA) of whole images, and AlexNet's PCA colour noise.

Whitening (e.g. Coates & Ng 2011; Goodfellow et al. 2013 on CIFAR-10): flatten each
``(H, W, C)`` image to a vector ``x`` of ``D = H W C`` values in ``[0, 1]`` units,
centre it with the training mean ``mu``, and with the eigendecomposition
``Sigma = U diag(s) U^T`` of the training covariance (``1/N`` normalization):

* PCA whitening: ``y = diag(1 / sqrt(s + eps)) U^T (x - mu)`` (optionally the top
  ``k`` components only), output ``(N, k)``;
* ZCA whitening: ``y = U diag(1 / sqrt(s + eps)) U^T (x - mu)``, reshaped back to
  ``(H, W, C)``: the whitening closest to the identity, so images still look like
  images (edges enhanced). With ``eps = 0`` the whitened training set has exactly the
  identity covariance; ``eps > 0`` damps the directions of variance below ``eps``.

PCA colour noise (Krizhevsky et al. 2012, "fancy PCA"): with the eigenvalues
``lambda`` and eigenvectors ``P`` of the 3x3 covariance of the training set's RGB
pixels, each training image gets ``P (alpha * lambda)`` added to every pixel, with
``alpha ~ N(0, std^2)`` drawn once per image (``std = 0.1`` in the paper).
:func:`pca_colour_noise` is registered as the augmentation ``'pca_colour_noise'``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data.augmentations._common import check_batch, check_key, jit_op
from cnn_jax.data.preprocess import to_float

__all__ = [
    "IMAGENET_PCA",
    "Whitening",
    "colour_pca",
    "fit_whitening",
    "pca_colour_noise",
]

#: AlexNet's ImageNet RGB eigenvalues and eigenvectors (columns) for ``[0, 1]`` pixels,
#: as used by fb.resnet.torch and most reimplementations.
IMAGENET_PCA = (
    (0.2175, 0.0188, 0.0045),
    (
        (-0.5675, 0.7192, 0.4009),
        (-0.5808, -0.0045, -0.8140),
        (-0.5836, -0.6948, 0.4203),
    ),
)

Array = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Whitening:
    """A fitted PCA or ZCA whitening of ``(H, W, C)`` images (see the module docstring).

    Attributes:
      kind: ``'zca'`` or ``'pca'``.
      shape: the image shape it was fitted on.
      mean: ``(D,)`` training mean, float32.
      matrix: ``(D, D)`` for ZCA, ``(k, D)`` for PCA: ``y = matrix @ (x - mean)``.
      eigenvalues: ``(D,)`` covariance eigenvalues, descending (float64).
      eps: the regularizer added to the eigenvalues.
    """

    kind: str
    shape: tuple[int, ...]
    mean: np.ndarray
    matrix: np.ndarray
    eigenvalues: np.ndarray
    eps: float

    def __call__(self, images: Array) -> np.ndarray:
        """Whitens ``(N, H, W, C)`` uint8 or float images on the host.

        Returns:
          float32 ``(N, H, W, C)`` for ZCA, ``(N, k)`` for PCA.

        Raises:
          ValueError: if the images' shape is not the fitted one.
        """
        x = to_float(np.asarray(images))
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"`images` of shape {tuple(x.shape)} do not match the whitening's image "
                f"shape {self.shape}"
            )
        y = (x.reshape(x.shape[0], -1) - self.mean) @ self.matrix.T
        return y.reshape(x.shape) if self.kind == "zca" else y


def _covariance(images: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    n = images.shape[0]
    d = int(np.prod(images.shape[1:]))
    total = np.zeros(d)
    gram = np.zeros((d, d))
    for start in range(0, n, chunk):
        x = to_float(np.asarray(images[start : start + chunk])).reshape(-1, d).astype(np.float64)
        total += x.sum(0)
        gram += x.T @ x
    mean = total / n
    return mean, gram / n - np.outer(mean, mean)


def fit_whitening(
    images: Array, kind: str = "zca", *, eps: float = 1e-2, components: int | None = None
) -> Whitening:
    """Fits a PCA or ZCA whitening on training images.

    Args:
      images: ``(N, H, W, C)`` uint8 or float training images (``[0, 1]`` units).
      kind: ``'zca'`` or ``'pca'``.
      eps: added to every eigenvalue before the inverse square root (``>= 0``).
      components: PCA only: keep the top ``k`` components (default: all ``D``).

    Returns:
      The fitted :class:`Whitening`.

    Raises:
      ValueError: for an unknown ``kind``, a negative ``eps``, bad ``components``,
        images that are not a non-empty rank-4 array, or ``eps = 0`` with a singular
        covariance.
    """
    if kind not in ("zca", "pca"):
        raise ValueError(f"`kind` (={kind!r}) must be 'zca' or 'pca'")
    if not isinstance(eps, int | float) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"`eps` (={eps!r}) must be a number >= 0")
    if getattr(images, "ndim", None) != 4 or images.shape[0] == 0:
        raise ValueError(
            f"`images` must be a non-empty (N, H, W, C) array, got shape "
            f"{getattr(images, 'shape', None)}"
        )
    d = int(np.prod(images.shape[1:]))
    if components is not None and (
        kind != "pca" or not isinstance(components, int) or not 1 <= components <= d
    ):
        raise ValueError(f"`components` (={components!r}) must be an int in [1, {d}] with 'pca'")
    mean, cov = _covariance(np.asarray(images))
    s, u = np.linalg.eigh(cov)
    s, u = np.maximum(s[::-1], 0.0), u[:, ::-1]
    if eps == 0 and s[-1] <= 1e-12 * max(s[0], 1e-300):
        raise ValueError(
            "`eps` (=0) cannot whiten a singular covariance (more pixels than independent "
            "images, or constant pixels); use eps > 0"
        )
    scale = 1.0 / np.sqrt(s + eps)
    if kind == "zca":
        matrix = (u * scale) @ u.T
    else:
        k = components or d
        matrix = (u[:, :k] * scale[:k]).T
    return Whitening(
        kind=kind,
        shape=tuple(int(v) for v in images.shape[1:]),
        mean=mean.astype(np.float32),
        matrix=matrix.astype(np.float32),
        eigenvalues=s,
        eps=float(eps),
    )


def colour_pca(images: Array) -> tuple[np.ndarray, np.ndarray]:
    """The eigenvalues (descending) and eigenvectors (columns) of the RGB pixel covariance.

    Args:
      images: ``(N, H, W, 3)`` uint8 or float images (``[0, 1]`` units).

    Returns:
      ``(eigenvalues (3,), eigenvectors (3, 3))``, float64.

    Raises:
      ValueError: for images that are not ``(N, H, W, 3)``.
    """
    if getattr(images, "ndim", None) != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(
            f"`images` must be (N, H, W, 3), got shape {getattr(images, 'shape', None)}"
        )
    pixels = np.asarray(images).reshape(-1, 1, 1, 3)
    _, cov = _covariance(pixels, chunk=1 << 20)
    s, u = np.linalg.eigh(cov)
    return np.maximum(s[::-1], 0.0), u[:, ::-1]


def pca_colour_noise(
    batch: Array,
    rng: Array,
    *,
    std: float = 0.1,
    eigenvalues: Any = IMAGENET_PCA[0],
    eigenvectors: Any = IMAGENET_PCA[1],
) -> Array:
    """AlexNet's PCA colour augmentation: adds ``P (alpha * lambda)`` to every pixel.

    Args:
      batch: ``(N, H, W, 3)`` float images (``[0, 1]`` units, or the units the
        eigenvalues were measured in).
      rng: a key; ``alpha ~ N(0, std^2)``, three values per image.
      std: the standard deviation of ``alpha``.
      eigenvalues: ``lambda`` (3,), e.g. from :func:`colour_pca` (default ImageNet's).
      eigenvectors: ``P`` (3, 3), eigenvectors in the columns.

    Returns:
      ``(N, H, W, 3)``, not clipped.

    Raises:
      ValueError: for a batch without 3 channels, a negative ``std`` or badly shaped
        eigenvalues/eigenvectors.
    """
    lam = tuple(float(v) for v in np.asarray(eigenvalues, np.float64).ravel())
    vec = np.asarray(eigenvectors, np.float64)
    if len(lam) != 3 or vec.shape != (3, 3):
        raise ValueError(
            f"`eigenvalues` (shape {np.shape(eigenvalues)}) and `eigenvectors` (shape "
            f"{vec.shape}) must be (3,) and (3, 3)"
        )
    return _pca_colour_noise(
        batch, rng, std=std, eigenvalues=lam, eigenvectors=tuple(map(tuple, vec.tolist()))
    )


@jit_op
def _pca_colour_noise(
    batch: Array, rng: Array, *, std: float, eigenvalues: tuple, eigenvectors: tuple
) -> Array:
    batch = check_batch(batch)
    rng = check_key(rng)
    if batch.shape[-1] != 3:
        raise ValueError(f"`batch` must have 3 channels, got shape {tuple(batch.shape)}")
    if not isinstance(std, int | float) or not std >= 0:
        raise ValueError(f"`std` (={std!r}) must be a number >= 0")
    lam = np.asarray(eigenvalues, np.float32)
    vec = np.asarray(eigenvectors, np.float32)
    alpha = std * jax.random.normal(rng, (batch.shape[0], 3), jnp.float32)
    shift = (alpha * lam) @ vec.T  # (N, 3): sum_j P[:, j] alpha_j lambda_j
    return batch + shift[:, None, None, :].astype(batch.dtype)


def register() -> None:
    """Registers ``'pca_colour_noise'`` as an augmentation (idempotent)."""
    from cnn_jax.data.augmentations import registry

    registry.AUGMENTATIONS.setdefault("pca_colour_noise", pca_colour_noise)
