"""Data augmentation as jit-able JAX functions on device batches.

Every augmentation has the signature ``op(batch, rng, **kwargs) -> batch``: ``batch`` is
a float ``(N, H, W, C)`` array (images in ``[0, 1]`` for the colour ops), ``rng`` a
``jax.random`` key (ignored by the deterministic ops, which accept ``None``). Randomness
is per example: the key is split into one key per example and the per-example function
is ``vmap``-ed, so each image gets its own crop, flip, angle, ... The keyword arguments
are static (Python values), so ``jax.jit(functools.partial(op, **kwargs))`` compiles.

Configs name augmentations: :func:`get_augmentation` builds one from a name and its
keyword arguments, :func:`augment` applies a list of ``(name, kwargs)``::

    ops = [("random_crop", {"padding": 4}), ("horizontal_flip", {})]
    x = augment(to_float(batch["image"]), rng, ops)   # inside the jitted train step

Names: ``random_crop``, ``inception_crop``, ``horizontal_flip``, ``vertical_flip``,
``color_jitter``, ``color_drop``, ``rotate``, ``rot90``, ``cutout``, ``gaussian_noise``,
``gaussian_blur``, ``sobel`` (see :func:`augmentation_names`).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy import ndimage

from cnn_jax.ops._validate import check_array_rank, is_int
from cnn_jax.ops.conv import depthwise_conv

__all__ = [
    "AUGMENTATIONS",
    "augment",
    "augmentation_names",
    "color_drop",
    "color_jitter",
    "cutout",
    "gaussian_blur",
    "gaussian_noise",
    "get_augmentation",
    "horizontal_flip",
    "hsv_to_rgb",
    "inception_crop",
    "random_crop",
    "register_augmentation",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "rot90",
    "rotate",
    "sobel",
    "vertical_flip",
]

Array = jax.Array
Augmentation = Callable[..., Array]

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL and torchvision


# ------------------------------------------------------------------------------ helpers


def _check_batch(batch: Any) -> Array:
    check_array_rank(batch, "batch", 4, "(N, H, W, C)")
    batch = jnp.asarray(batch)
    if not jnp.issubdtype(batch.dtype, jnp.floating):
        raise TypeError(
            f"`batch` must be a float array (convert uint8 images with "
            f"cnn_jax.data.preprocess.to_float), got dtype {batch.dtype}"
        )
    return batch


def _check_prob(p: Any, name: str = "p") -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise ValueError(f"`{name}` (={p!r}) must be a probability in [0, 1]")
    return float(p)


def _check_key(rng: Any) -> Array:
    if rng is None:
        raise ValueError("`rng` must be a jax.random key, got None")
    return rng


def _range(value: Any, name: str, *, symmetric: bool = False, low: float | None = None):
    """A number ``v`` as ``(-v, v)`` (symmetric) or ``(v, v)``, or a checked pair."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = (-float(value), float(value)) if symmetric else (float(value), float(value))
    elif (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        lo, hi = float(value[0]), float(value[1])
    else:
        raise ValueError(f"`{name}` (={value!r}) must be a number or a (low, high) pair")
    if lo > hi:
        raise ValueError(f"`{name}` (={value!r}) must have low <= high")
    if low is not None and lo < low:
        raise ValueError(f"`{name}` (={value!r}) must be >= {low}")
    return lo, hi


def _size(size: Any, default: tuple[int, int], name: str = "size") -> tuple[int, int]:
    if size is None:
        return default
    if is_int(size):
        size = (size, size)
    if not (isinstance(size, Sequence) and len(size) == 2 and all(is_int(s) for s in size)):
        raise ValueError(f"`{name}` (={size!r}) must be an int or an (height, width) pair")
    if min(size) < 1:
        raise ValueError(f"`{name}` (={size!r}) must be positive")
    return int(size[0]), int(size[1])


def _uniforms(rng: Array, n: int, k: int) -> Array:
    """``(n, k)`` independent uniforms in ``[0, 1)``: ``k`` per example.

    All of an op's per-example randomness comes from this one draw, made for the whole
    batch (not from split keys under ``vmap``) and flat: XLA:CPU compiles every
    threefry draw, and multi-dimensional ones, slowly.
    """
    return jax.random.uniform(rng, (n * k,)).reshape(n, k)


def _scale(u: Array, lo: float, hi: float) -> Array:
    """Maps uniforms in ``[0, 1)`` to ``[lo, hi)``."""
    return lo + (hi - lo) * u


def _randint(u: Array, high: int) -> Array:
    """Maps uniforms in ``[0, 1)`` to ints in ``[0, high)``."""
    return jnp.minimum(jnp.floor(u * high).astype(jnp.int32), high - 1)


def _apply_with_prob(new: Array, old: Array, u: Array, p: float) -> Array:
    """Per example: ``new`` where ``u < p`` (``u``: ``(N,)`` uniforms), else ``old``."""
    if p >= 1.0:
        return new
    if p <= 0.0:
        return old
    take = (u < p).reshape((-1,) + (1,) * (new.ndim - 1))
    return jnp.where(take, new, old)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    return value


def _jit_op(fn: Callable[..., Array]) -> Callable[..., Array]:
    """Compiles an augmentation once per shape and keyword arguments (which are static).

    Argument checks run while tracing, so they raise the same clear errors; inside an
    outer ``jit`` the op is inlined. Lists in keyword arguments become tuples.
    """
    static = [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]
    jitted = jax.jit(fn, static_argnames=static)

    @functools.wraps(fn)
    def op(batch: Array, rng: Array | None = None, **kwargs: Any) -> Array:
        return jitted(batch, rng, **{k: _hashable(v) for k, v in kwargs.items()})

    return op


def rgb_to_grayscale(images: Array, keep_channels: bool = True) -> Array:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of ``(..., 3)`` images.

    Args:
      images: ``(..., 3)`` RGB.
      keep_channels: repeat the luma in 3 channels (else one channel).

    Returns:
      ``(..., 3)`` or ``(..., 1)``.

    Raises:
      ValueError: if the last axis is not 3.
    """
    if images.shape[-1] != 3:
        raise ValueError(f"`images` must have 3 (RGB) channels, got shape {tuple(images.shape)}")
    gray = jnp.tensordot(images, jnp.asarray(_LUMA, images.dtype), axes=[[-1], [0]])[..., None]
    return jnp.broadcast_to(gray, images.shape) if keep_channels else gray


def rgb_to_hsv(images: Array) -> Array:
    """RGB in ``[0, 1]`` to HSV (hue in ``[0, 1)``), elementwise over ``(..., 3)``.

    Args:
      images: ``(..., 3)`` RGB.

    Returns:
      ``(..., 3)`` HSV.
    """
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    maxc = jnp.max(images, axis=-1)
    minc = jnp.min(images, axis=-1)
    delta = maxc - minc
    safe = jnp.where(delta > 0, delta, 1.0)
    s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return jnp.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(images: Array) -> Array:
    """HSV (hue in ``[0, 1)``) to RGB, the inverse of :func:`rgb_to_hsv`.

    Args:
      images: ``(..., 3)`` HSV.

    Returns:
      ``(..., 3)`` RGB.
    """
    h, s, v = images[..., 0], images[..., 1], images[..., 2]
    h6 = (h % 1.0) * 6.0
    i = jnp.floor(h6)
    f = h6 - i
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    i = i.astype(jnp.int32) % 6
    r = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [v, q, p, p, t], v)
    g = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [t, v, v, q, p], p)
    b = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [p, p, t, v, v], q)
    return jnp.stack([r, g, b], axis=-1)


# ---------------------------------------------------------------------- geometric ops


@_jit_op
def random_crop(
    batch: Array,
    rng: Array,
    *,
    size: int | Sequence[int] | None = None,
    padding: int = 4,
    padding_mode: str = "reflect",
) -> Array:
    """Pads every side by ``padding``, then takes a random ``size`` crop per example.

    The CIFAR recipe (He et al. 2016): ``padding=4`` and crops of the original size.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      size: the crop ``(h, w)`` or an int (default: ``(H, W)``).
      padding: pixels added on each side, non-negative.
      padding_mode: ``'reflect'``, ``'zeros'`` or ``'replicate'``.

    Returns:
      ``(N, h, w, C)``.

    Raises:
      ValueError: for a crop larger than the padded image, a negative padding, an unknown
        padding mode, or a reflect padding not smaller than the image.
    """
    batch = _check_batch(batch)
    rng = _check_key(rng)
    _, H, W, _ = batch.shape
    h, w = _size(size, (H, W))
    if not is_int(padding) or padding < 0:
        raise ValueError(f"`padding` (={padding!r}) must be a non-negative int")
    modes = {"reflect": "reflect", "zeros": "constant", "replicate": "edge"}
    if padding_mode not in modes:
        raise ValueError(
            f"`padding_mode` (={padding_mode!r}) must be one of {', '.join(map(repr, modes))}"
        )
    if padding_mode == "reflect" and padding >= min(H, W):
        raise ValueError(
            f"`padding` (={padding}) must be smaller than the image ({H}x{W}) with "
            "padding_mode='reflect'"
        )
    Hp, Wp = H + 2 * padding, W + 2 * padding
    if h > Hp or w > Wp:
        raise ValueError(f"`size` (={(h, w)}) is larger than the padded image ({Hp}, {Wp})")
    if padding:
        batch = jnp.pad(
            batch, ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)), modes[padding_mode]
        )

    u = _uniforms(rng, batch.shape[0], 2)
    ys, xs = _randint(u[:, 0], Hp - h + 1), _randint(u[:, 1], Wp - w + 1)

    def crop(image: Array, y: Array, x: Array) -> Array:
        return lax.dynamic_slice(image, (y, x, 0), (h, w, image.shape[-1]))

    return jax.vmap(crop)(batch, ys, xs)


@_jit_op
def inception_crop(
    batch: Array,
    rng: Array,
    *,
    size: int | Sequence[int] | None = None,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    attempts: int = 10,
    method: str = "linear",
) -> Array:
    """Inception-style random-resized crop (Szegedy et al. 2015; torchvision's rules).

    Per example: up to ``attempts`` times, draw an area fraction from ``scale`` and a
    log-uniform aspect ratio (width / height) from ``ratio``; the first crop that fits
    is taken at a uniform position, otherwise the central crop of the whole image with
    the ratio clamped into ``ratio``. The crop is resized to ``size`` with
    ``jax.image.scale_and_translate`` (``jax.image.resize`` of a crop whose position and
    size are traced values).

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      size: the output ``(h, w)`` or an int (default: ``(H, W)``).
      scale: the range of the crop's area as a fraction of the image's.
      ratio: the range of the crop's aspect ratio (width / height).
      attempts: the number of draws before falling back to the central crop.
      method: ``'linear'``, ``'cubic'``, ``'lanczos3'`` or ``'lanczos5'``.

    Returns:
      ``(N, h, w, C)``.

    Raises:
      ValueError: for bad ranges or sizes.
    """
    batch = _check_batch(batch)
    rng = _check_key(rng)
    _, H, W, C = batch.shape
    oh, ow = _size(size, (H, W))
    s_lo, s_hi = _range(scale, "scale", low=0.0)
    r_lo, r_hi = _range(ratio, "ratio")
    if s_hi > 1.0 or s_hi <= 0.0:
        raise ValueError(f"`scale` (={scale!r}) must lie in (0, 1]")
    if r_lo <= 0:
        raise ValueError(f"`ratio` (={ratio!r}) must be positive")
    if not is_int(attempts) or attempts < 1:
        raise ValueError(f"`attempts` (={attempts!r}) must be a positive int")
    if method not in ("linear", "cubic", "lanczos3", "lanczos5"):
        raise ValueError(
            f"`method` (={method!r}) must be 'linear', 'cubic', 'lanczos3' or 'lanczos5'"
        )
    area = float(H * W)
    log_r = (math.log(r_lo), math.log(r_hi))
    # The fallback: the whole image, its ratio clamped into [r_lo, r_hi].
    in_ratio = W / H
    if in_ratio < r_lo:
        fb_w, fb_h = W, round(W / r_lo)
    elif in_ratio > r_hi:
        fb_h, fb_w = H, round(H * r_hi)
    else:
        fb_h, fb_w = H, W

    u = _uniforms(rng, batch.shape[0], 2 * attempts + 2)
    targets = area * _scale(u[:, :attempts], s_lo, s_hi)
    ratios = jnp.exp(_scale(u[:, attempts : 2 * attempts], *log_r))
    uys, uxs = u[:, -2], u[:, -1]

    def crop(image: Array, target: Array, r: Array, uy: Array, ux: Array) -> Array:
        w = jnp.round(jnp.sqrt(target * r))
        h = jnp.round(jnp.sqrt(target / r))
        ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
        first = jnp.argmax(ok)
        found = ok[first]
        ch = jnp.where(found, h[first], float(fb_h))
        cw = jnp.where(found, w[first], float(fb_w))
        y0 = jnp.where(found, jnp.floor(uy * (H - ch + 1)), jnp.floor((H - ch) / 2))
        x0 = jnp.where(found, jnp.floor(ux * (W - cw + 1)), jnp.floor((W - cw) / 2))
        sy, sx = oh / ch, ow / cw
        return jax.image.scale_and_translate(
            image,
            (oh, ow, C),
            spatial_dims=(0, 1),
            scale=jnp.stack([sy, sx]).astype(image.dtype),
            translation=jnp.stack([-y0 * sy, -x0 * sx]).astype(image.dtype),
            method=method,
            antialias=True,
        )

    return jax.vmap(crop)(batch, targets, ratios, uys, uxs)


@_jit_op
def horizontal_flip(batch: Array, rng: Array, *, p: float = 0.5) -> Array:
    """Mirrors each image left-right with probability ``p``.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key (the same key flips the same examples: applying twice is the identity).
      p: the probability.

    Returns:
      ``(N, H, W, C)``.
    """
    batch = _check_batch(batch)
    u = _uniforms(_check_key(rng), batch.shape[0], 1)[:, 0]
    return _apply_with_prob(batch[:, :, ::-1], batch, u, _check_prob(p))


@_jit_op
def vertical_flip(batch: Array, rng: Array, *, p: float = 0.5) -> Array:
    """Mirrors each image top-bottom with probability ``p``.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      p: the probability.

    Returns:
      ``(N, H, W, C)``.
    """
    batch = _check_batch(batch)
    u = _uniforms(_check_key(rng), batch.shape[0], 1)[:, 0]
    return _apply_with_prob(batch[:, ::-1], batch, u, _check_prob(p))


@_jit_op
def rotate(
    batch: Array,
    rng: Array,
    *,
    angle: float | Sequence[float] = 15.0,
    fill: float = 0.0,
    p: float = 1.0,
) -> Array:
    """Rotates each image by a random angle about its centre, bilinear sampling.

    Positive angles turn the picture counter-clockwise as displayed (row 0 at the top),
    as ``jnp.rot90``: an angle of 90 degrees equals ``jnp.rot90`` up to interpolation of
    non-square images. Pixels sampled from outside the image get ``fill``.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      angle: degrees: ``a`` draws uniformly from ``[-a, a]``, ``(lo, hi)`` from that range.
      fill: the value outside the source image.
      p: the probability of rotating an example.

    Returns:
      ``(N, H, W, C)``.
    """
    batch = _check_batch(batch)
    rng = _check_key(rng)
    lo, hi = _range(angle, "angle", symmetric=True)
    p = _check_prob(p)
    _, H, W, _ = batch.shape
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    yy, xx = jnp.meshgrid(
        jnp.arange(H, dtype=batch.dtype), jnp.arange(W, dtype=batch.dtype), indexing="ij"
    )
    dy, dx = yy - cy, xx - cx
    u = _uniforms(rng, batch.shape[0], 2)
    thetas = jnp.deg2rad(_scale(u[:, 0], lo, hi)).astype(batch.dtype)

    def rot(image: Array, theta: Array) -> Array:
        c, s = jnp.cos(theta), jnp.sin(theta)
        src_y = cy + c * dy + s * dx
        src_x = cx - s * dy + c * dx

        def channel(ch: Array) -> Array:
            return ndimage.map_coordinates(ch, [src_y, src_x], order=1, mode="constant", cval=fill)

        return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)

    out = jax.vmap(rot)(batch, thetas)
    return _apply_with_prob(out, batch, u[:, 1], p)


@_jit_op
def rot90(batch: Array, rng: Array | None = None, *, k: int | None = None) -> Array:
    """Exact rotations by multiples of 90 degrees (``jnp.rot90``, counter-clockwise).

    Args:
      batch: ``(N, H, W, C)``; square unless ``k`` is fixed.
      rng: a key, used when ``k`` is ``None``.
      k: a fixed number of quarter turns for every image, or ``None`` for a uniform
        random ``k`` in ``{0, 1, 2, 3}`` per example.

    Returns:
      The rotated batch (``(N, W, H, C)`` for a fixed odd ``k``).

    Raises:
      ValueError: for random ``k`` on non-square images.
    """
    batch = _check_batch(batch)
    if k is not None:
        if not is_int(k):
            raise ValueError(f"`k` (={k!r}) must be an int or None")
        return jnp.rot90(batch, int(k), axes=(1, 2))
    rng = _check_key(rng)
    if batch.shape[1] != batch.shape[2]:
        raise ValueError(
            f"random quarter turns need square images, got `batch` shape {tuple(batch.shape)}"
        )
    ks = _randint(_uniforms(rng, batch.shape[0], 1), 4).reshape(-1, 1, 1, 1)
    out = batch
    for i in range(1, 4):
        out = jnp.where(ks == i, jnp.rot90(batch, i, axes=(1, 2)), out)
    return out


# -------------------------------------------------------------------------- colour ops


def _blend(a: Array, b: Array, f: Array) -> Array:
    """``clip(b + f (a - b))`` in [0, 1]: ``f = 1`` gives ``a``, ``f = 0`` gives ``b``."""
    return jnp.clip(b + f * (a - b), 0.0, 1.0)


def _adjust_brightness(x: Array, f: Array) -> Array:
    return jnp.clip(x * f, 0.0, 1.0)


def _adjust_contrast(x: Array, f: Array) -> Array:
    """Blends each image of ``(N, H, W, C)`` with its mean luma."""
    gray = rgb_to_grayscale(x, keep_channels=False) if x.shape[-1] == 3 else x
    return _blend(x, jnp.mean(gray, axis=(1, 2, 3), keepdims=True), f)


def _adjust_saturation(x: Array, f: Array) -> Array:
    return _blend(x, rgb_to_grayscale(x), f)


def _adjust_hue(x: Array, delta: Array) -> Array:
    hsv = rgb_to_hsv(x)
    hue = (hsv[..., 0] + delta[..., 0]) % 1.0  # delta: (N, 1, 1, 1)
    hsv = jnp.stack([hue, hsv[..., 1], hsv[..., 2]], axis=-1)
    return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


@_jit_op
def color_jitter(
    batch: Array,
    rng: Array,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 1.0,
    random_order: bool = True,
) -> Array:
    """Random brightness, contrast, saturation and hue (torchvision's ``ColorJitter``).

    Factors are drawn per example: brightness, contrast and saturation from
    ``[max(0, 1 - v), 1 + v]``, the hue shift from ``[-hue, hue]`` (a fraction of the hue
    circle, at most 0.5). Brightness multiplies; contrast blends with the image's mean
    luma; saturation blends with the grayscale image; hue shifts in HSV. Results are
    clipped to ``[0, 1]``.

    Args:
      batch: ``(N, H, W, C)`` in ``[0, 1]``; ``C = 3`` unless saturation and hue are 0.
      rng: a key.
      brightness: strength, non-negative.
      contrast: strength, non-negative.
      saturation: strength, non-negative.
      hue: strength in ``[0, 0.5]``.
      p: the probability of jittering an example (SimCLR uses 0.8).
      random_order: apply the four in a random order per example (as torchvision),
        else in the order brightness, contrast, saturation, hue.

    Returns:
      ``(N, H, W, C)``.

    Raises:
      ValueError: for negative strengths, ``hue > 0.5``, or saturation/hue on images
        that are not RGB.
    """
    batch = _check_batch(batch)
    rng = _check_key(rng)
    for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise ValueError(f"`{name}` (={v!r}) must be a non-negative number")
    if isinstance(hue, bool) or not isinstance(hue, int | float) or not 0 <= hue <= 0.5:
        raise ValueError(f"`hue` (={hue!r}) must be a number in [0, 0.5]")
    if batch.shape[-1] != 3 and (saturation or hue):
        raise ValueError(
            f"`saturation` (={saturation}) and `hue` (={hue}) need RGB images, got `batch` "
            f"shape {tuple(batch.shape)}; set them to 0"
        )
    p = _check_prob(p)
    n = batch.shape[0]
    shape = (n, 1, 1, 1)
    u = _uniforms(rng, n, 9)  # 3 factors, the hue shift, 4 for the order, p
    factors = [
        _scale(u[:, i], max(0.0, 1.0 - v), 1.0 + v).astype(batch.dtype).reshape(shape)
        for i, v in enumerate((brightness, contrast, saturation))
    ]
    delta = _scale(u[:, 3], -hue, hue).astype(batch.dtype).reshape(shape)
    ops = [
        lambda x: _adjust_brightness(x, factors[0]),
        lambda x: _adjust_contrast(x, factors[1]),
        lambda x: _adjust_saturation(x, factors[2]),
        lambda x: _adjust_hue(x, delta),
    ]
    active = [i for i, v in enumerate((brightness, contrast, saturation, hue)) if v]
    out = batch
    if not random_order:
        for i in active:
            out = ops[i](out)
    else:
        # A random permutation of the active ops per example: at step t, apply the op
        # whose rank (position in the example's random order) is t.
        ranks = jnp.argsort(jnp.argsort(u[:, 4 : 4 + len(active)], axis=1), axis=1)
        for t in range(len(active)):
            for j, i in enumerate(active):
                out = jnp.where((ranks[:, j] == t).reshape(shape), ops[i](out), out)
    return _apply_with_prob(out, batch, u[:, 8], p)


@_jit_op
def color_drop(batch: Array, rng: Array, *, p: float = 0.2) -> Array:
    """Converts each image to grayscale (kept in 3 channels) with probability ``p``.

    Args:
      batch: ``(N, H, W, 3)``.
      rng: a key.
      p: the probability (SimCLR: 0.2).

    Returns:
      ``(N, H, W, 3)``.
    """
    batch = _check_batch(batch)
    u = _uniforms(_check_key(rng), batch.shape[0], 1)[:, 0]
    return _apply_with_prob(rgb_to_grayscale(batch), batch, u, _check_prob(p))


# ------------------------------------------------------------------------ erasing, noise


@_jit_op
def cutout(
    batch: Array,
    rng: Array,
    *,
    size: int | Sequence[int] = 16,
    fill: float = 0.0,
    p: float = 1.0,
    inside: bool = False,
) -> Array:
    """Cutout (DeVries & Taylor 2017): fills a ``size`` square with ``fill``, per example.

    As in the paper the square's centre is uniform over the image, so it may be clipped
    by the border; ``inside=True`` keeps it wholly inside (top-left corner uniform over
    the valid positions). All channels are filled.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      size: the square's side, or ``(h, w)``.
      fill: the value written.
      p: the probability of cutting an example.
      inside: keep the patch inside the image.

    Returns:
      ``(N, H, W, C)``.

    Raises:
      ValueError: for a non-positive size, or (``inside``) one larger than the image.
    """
    batch = _check_batch(batch)
    rng = _check_key(rng)
    _, H, W, _ = batch.shape
    h, w = _size(size, (H, W))
    if inside and (h > H or w > W):
        raise ValueError(f"`size` (={size!r}) is larger than the images ({H}x{W})")
    p = _check_prob(p)
    u = _uniforms(rng, batch.shape[0], 3)
    if inside:
        y0 = _randint(u[:, 0], H - h + 1)
        x0 = _randint(u[:, 1], W - w + 1)
    else:
        y0 = _randint(u[:, 0], H) - h // 2
        x0 = _randint(u[:, 1], W) - w // 2
    rows = jnp.arange(H)[None, :]
    cols = jnp.arange(W)[None, :]
    in_y = (rows >= y0[:, None]) & (rows < y0[:, None] + h)
    in_x = (cols >= x0[:, None]) & (cols < x0[:, None] + w)
    hole = (in_y[:, :, None] & in_x[:, None, :])[..., None]
    out = jnp.where(hole, jnp.asarray(fill, batch.dtype), batch)
    return _apply_with_prob(out, batch, u[:, 2], p)


@_jit_op
def gaussian_noise(
    batch: Array,
    rng: Array,
    *,
    std: float | Sequence[float] = 0.1,
    mean: float = 0.0,
    clip: Sequence[float] | None = None,
) -> Array:
    """Adds i.i.d. Gaussian noise ``mean + std * N(0, 1)`` to every value.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      std: the standard deviation, or a ``(low, high)`` range drawn per example.
      mean: the noise's mean.
      clip: an optional ``(low, high)`` to clip the result to (e.g. ``(0, 1)``).

    Returns:
      ``(N, H, W, C)``.

    Raises:
      ValueError: for a negative ``std`` or a bad ``clip``.
    """
    batch = _check_batch(batch)
    rng = _check_key(rng)
    lo, hi = _range(std, "std", low=0.0)
    if clip is not None:
        clip = _range(clip, "clip")
    k_std, k_noise = jax.random.split(rng)  # the noise: a normal draw of its own
    n = batch.shape[0]
    sigma = _scale(_uniforms(k_std, n, 1), lo, hi).reshape(n, 1, 1, 1) if hi > lo else lo
    # Drawn flat: XLA:CPU compiles multi-dimensional threefry draws very slowly.
    noise = jax.random.normal(k_noise, (math.prod(batch.shape),), batch.dtype)
    noise = noise.reshape(batch.shape)
    out = batch + (mean + sigma * noise).astype(batch.dtype)
    return jnp.clip(out, *clip) if clip is not None else out


# ------------------------------------------------------------------------------ filters


def _depthwise(batch: Array, taps: Array, axis: int, padding_mode: str) -> Array:
    """Convolves every (example, channel) plane with its own 1-D kernel along ``axis``.

    ``taps``: ``(N, k)``. Examples are folded into channels so one depthwise convolution
    (``cnn_jax.ops.depthwise_conv``) filters the whole batch.
    """
    n, H, W, C = batch.shape
    k = taps.shape[-1]
    x = jnp.transpose(batch, (1, 2, 0, 3)).reshape(1, H, W, n * C)
    kernel = jnp.repeat(taps, C, axis=0).T  # (k, n * C), channel n * C + c
    kernel = kernel.reshape((k, 1, 1, n * C) if axis == 1 else (1, k, 1, n * C))
    y = depthwise_conv(x, kernel.astype(x.dtype), padding="SAME", padding_mode=padding_mode)
    return jnp.transpose(y.reshape(H, W, n, C), (2, 0, 1, 3))


@_jit_op
def gaussian_blur(
    batch: Array,
    rng: Array,
    *,
    sigma: float | Sequence[float] = (0.1, 2.0),
    kernel_size: int | None = None,
    p: float = 1.0,
    padding_mode: str = "reflect",
) -> Array:
    """Separable Gaussian blur with a random ``sigma`` (pixels) per example.

    The kernel weights ``exp(-x^2 / (2 sigma^2))`` for ``x`` in ``[-r, r]`` are normalized
    to sum to 1, so constant images are unchanged; rows then columns are filtered with
    ``cnn_jax.ops.depthwise_conv``.

    Args:
      batch: ``(N, H, W, C)``.
      rng: a key.
      sigma: the standard deviation, or a ``(low, high)`` range drawn per example.
      kernel_size: odd taps per axis (default ``2 * ceil(3 * max sigma) + 1``, capped to
        what ``padding_mode`` allows for the image).
      p: the probability of blurring an example.
      padding_mode: border handling: ``'reflect'``, ``'replicate'``, ``'circular'`` or
        ``'zeros'``.

    Returns:
      ``(N, H, W, C)``.

    Raises:
      ValueError: for a non-positive sigma or an even / too large kernel size.
    """
    batch = _check_batch(batch)
    rng = _check_key(rng)
    lo, hi = _range(sigma, "sigma")
    if lo <= 0:
        raise ValueError(f"`sigma` (={sigma!r}) must be positive")
    _, H, W, _ = batch.shape
    max_radius = min(H, W) - 1 if padding_mode == "reflect" else max(H, W)
    if kernel_size is None:
        radius = min(math.ceil(3 * hi), max_radius)
    else:
        if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` (={kernel_size!r}) must be a positive odd int")
        radius = kernel_size // 2
        if radius > max_radius:
            raise ValueError(
                f"`kernel_size` (={kernel_size}) is too large for {H}x{W} images with "
                f"padding_mode={padding_mode!r}"
            )
    p = _check_prob(p)
    u = _uniforms(rng, batch.shape[0], 2)
    n = batch.shape[0]
    sig = _scale(u[:, :1], lo, hi) if hi > lo else jnp.full((n, 1), lo)
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)[None, :]
    taps = jnp.exp(-0.5 * (x / sig) ** 2)
    taps = taps / jnp.sum(taps, axis=1, keepdims=True)
    out = _depthwise(_depthwise(batch, taps, 1, padding_mode), taps, 2, padding_mode)
    return _apply_with_prob(out, batch, u[:, 1], p)


@_jit_op
def sobel(
    batch: Array,
    rng: Array | None = None,
    *,
    output: str = "magnitude",
    grayscale: bool = False,
    normalize: bool = True,
    padding_mode: str = "replicate",
) -> Array:
    """Sobel filtering (deterministic; ``rng`` is ignored), per channel.

    ``gx`` is the derivative along the width (left to right), ``gy`` along the height
    (top to bottom): the kernels ``[1, 2, 1]^T [-1, 0, 1]`` and its transpose, divided by
    8 when ``normalize`` so that a ramp of slope 1 has gradient 1. Computed with
    ``cnn_jax.ops.depthwise_conv``; ``'replicate'`` padding makes constant images give
    zero everywhere.

    Args:
      batch: ``(N, H, W, C)``.
      rng: ignored.
      output: ``'magnitude'`` (``sqrt(gx^2 + gy^2)``, ``(N, H, W, C)``) or
        ``'gradients'`` (``concat([gx, gy], -1)``, ``(N, H, W, 2C)``).
      grayscale: convert RGB to luma first (then ``C = 1``).
      normalize: divide by 8.
      padding_mode: border handling, as in ``cnn_jax.ops.conv``.

    Returns:
      The edge magnitude or the two gradients.

    Raises:
      ValueError: for an unknown ``output``.
    """
    del rng
    batch = _check_batch(batch)
    if output not in ("magnitude", "gradients"):
        raise ValueError(f"`output` (={output!r}) must be 'magnitude' or 'gradients'")
    if grayscale:
        batch = rgb_to_grayscale(batch, keep_channels=False)
    C = batch.shape[-1]
    smooth = jnp.array([1.0, 2.0, 1.0])
    diff = jnp.array([-1.0, 0.0, 1.0])
    kx = jnp.outer(smooth, diff)  # (3, 3): rows smooth, columns differentiate
    ky = kx.T
    if normalize:
        kx, ky = kx / 8.0, ky / 8.0
    # Depthwise with multiplier 2: output channel 2c + j is input channel c's j-th filter.
    kernel = jnp.stack([kx, ky], axis=-1)  # (3, 3, 2)
    kernel = jnp.tile(kernel, (1, 1, C))[:, :, None, :].astype(batch.dtype)  # (3, 3, 1, 2C)
    g = depthwise_conv(batch, kernel, padding="SAME", padding_mode=padding_mode)
    gx, gy = g[..., 0::2], g[..., 1::2]
    if output == "gradients":
        return jnp.concatenate([gx, gy], axis=-1)
    return jnp.sqrt(gx * gx + gy * gy)


# ----------------------------------------------------------------------------- registry

AUGMENTATIONS: dict[str, Augmentation] = {
    "random_crop": random_crop,
    "inception_crop": inception_crop,
    "horizontal_flip": horizontal_flip,
    "vertical_flip": vertical_flip,
    "color_jitter": color_jitter,
    "color_drop": color_drop,
    "rotate": rotate,
    "rot90": rot90,
    "cutout": cutout,
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "sobel": sobel,
}

_ALIASES = {
    "flip": "horizontal_flip",
    "random_grayscale": "color_drop",
    "crop": "random_crop",
    "random_resized_crop": "inception_crop",
    "blur": "gaussian_blur",
    "noise": "gaussian_noise",
}


def augmentation_names() -> tuple[str, ...]:
    """The registered augmentation names (aliases not included)."""
    return tuple(AUGMENTATIONS)


def register_augmentation(name: str, fn: Augmentation) -> None:
    """Registers ``fn(batch, rng, **kwargs)`` under ``name``.

    Args:
      name: the new name.
      fn: the augmentation.

    Raises:
      ValueError: if the name is taken.
    """
    if name in AUGMENTATIONS or name in _ALIASES:
        raise ValueError(f"augmentation `name` (={name!r}) is already registered")
    AUGMENTATIONS[name] = fn


def get_augmentation(name: str, **kwargs: Any) -> Callable[[Array, Array], Array]:
    """An augmentation by name, with its keyword arguments bound.

    Args:
      name: a name from :func:`augmentation_names` (or an alias: ``flip``, ``crop``,
        ``random_resized_crop``, ``random_grayscale``, ``blur``, ``noise``).
      **kwargs: the augmentation's keyword arguments.

    Returns:
      ``fn(batch, rng) -> batch``.

    Raises:
      ValueError: for an unknown name.
      TypeError: for a keyword argument the augmentation does not take.
    """
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in AUGMENTATIONS:
        known = ", ".join(repr(n) for n in (*AUGMENTATIONS, *_ALIASES))
        raise ValueError(f"unknown augmentation `name` (={name!r}); known: {known}")
    fn = AUGMENTATIONS[key]
    params = inspect.signature(fn).parameters
    allowed = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"augmentation {key!r} got unknown argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(map(repr, allowed)) or 'none'}"
        )
    return functools.partial(fn, **kwargs)


def needs_unit_range(name: str, **kwargs: Any) -> bool:
    """Whether an augmentation assumes images in ``[0, 1]`` and clips its result to it.

    ``color_jitter`` does, and ``gaussian_noise`` when given a ``clip``: applied to
    normalized images, they would flatten them.

    Args:
      name: an augmentation name or alias.
      **kwargs: its keyword arguments.

    Returns:
      True for the ops above.
    """
    key = _ALIASES.get(name, name)
    return key == "color_jitter" or (key == "gaussian_noise" and kwargs.get("clip") is not None)


def augment(
    batch: Array,
    rng: Array,
    ops: Sequence[tuple[str, dict[str, Any]] | str | Callable[[Array, Array], Array]],
) -> Array:
    """Applies a list of augmentations in order, each with its own key (``fold_in(rng, i)``).

    Args:
      batch: ``(N, H, W, C)`` float.
      rng: a key.
      ops: ``(name, kwargs)`` pairs, bare names (default arguments) or callables
        ``fn(batch, rng)``.

    Returns:
      The augmented batch.

    Raises:
      ValueError, TypeError: for a malformed entry, and as :func:`get_augmentation`.
    """
    for i, op in enumerate(ops):
        if isinstance(op, str):
            fn = get_augmentation(op)
        elif callable(op):
            fn = op
        elif isinstance(op, Sequence) and len(op) == 2 and isinstance(op[0], str):
            fn = get_augmentation(op[0], **dict(op[1] or {}))
        else:
            raise ValueError(
                f"`ops[{i}]` (={op!r}) must be a (name, kwargs) pair, a name or a callable"
            )
        batch = fn(batch, jax.random.fold_in(rng, i))
    return batch
