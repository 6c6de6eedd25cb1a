"""Gatys-style image optimization: L-BFGS or Adam on the pixels, jit-compiled.

:func:`stylize` optimizes an image (from white noise, from the content image, or from
a given array) so that its VGG-19 features minimize ``cnn_jax.style.losses.total_loss``
against a content and a style image. The pixels are the optimization variable in
[0, 1] RGB space (unconstrained, as in the paper; clipped on output); the network's
preprocessing is applied inside the loss. Steps run in jit-compiled chunks of
``callback_every`` steps (``lax.scan``), after each of which ``callback(step, image,
losses)`` is called (progress bars, intermediate images).

L-BFGS is ``optax.lbfgs`` (memory 10, zoom line search for the strong Wolfe
conditions): one step is one L-BFGS iteration, which may evaluate the loss several
times in its line search. Adam is ``optax.adam(learning_rate)``.

:func:`stylize_multiscale` runs coarse-to-fine (each scale starts from the previous
result upsampled); :func:`preserve_colour` does luminance-only transfer (Gatys et al.
2016, "Preserving Color in Neural Artistic Style Transfer").
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax.style import fast_vgg
from cnn_jax.style.features import min_image_size, preprocess
from cnn_jax.style.losses import StyleWeights, gram_matrix, total_loss

__all__ = [
    "gatys_loss",
    "luminance",
    "match_luminance",
    "preserve_colour",
    "rgb_to_yiq",
    "stylize",
    "stylize_multiscale",
    "yiq_to_rgb",
]

Array = Any
Callback = Callable[[int, np.ndarray, dict[str, float]], None]

_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    np.float32,
)


def rgb_to_yiq(images: Array) -> Array:
    """RGB -> YIQ on the last axis."""
    return images @ _YIQ.T


def yiq_to_rgb(images: Array) -> Array:
    """YIQ -> RGB on the last axis."""
    return images @ np.linalg.inv(_YIQ).T.astype(np.float32)


def luminance(images: Array) -> Array:
    """The Y channel repeated into 3 channels (a grey RGB image)."""
    y = rgb_to_yiq(images)[..., :1]
    return jnp.repeat(y, 3, axis=-1) if isinstance(y, jax.Array) else np.repeat(y, 3, axis=-1)


def match_luminance(style: Array, content: Array) -> Array:
    """The style's luminance with the content's luminance mean and standard deviation."""
    ys, yc = luminance(style), luminance(content)
    return (ys - ys.mean()) * (yc.std() / max(float(ys.std()), 1e-8)) + yc.mean()


def preserve_colour(stylized_luminance: Array, content: Array) -> Array:
    """Combines a stylized luminance image's Y with the content's I and Q, in [0, 1]."""
    y = rgb_to_yiq(np.asarray(stylized_luminance))[..., :1]
    iq = rgb_to_yiq(np.asarray(content))[..., 1:]
    return np.clip(yiq_to_rgb(np.concatenate([y, iq], axis=-1)), 0.0, 1.0)


def _check_image(x: Any, name: str, min_side: int, dtype: Any = np.float32) -> np.ndarray:
    x = np.asarray(x, dtype)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"`{name}` must be an (H, W, 3) RGB image, got shape {x.shape}")
    if min(x.shape[:2]) < min_side:
        raise ValueError(
            f"`{name}` of {x.shape[0]}x{x.shape[1]} is too small for the chosen layers: "
            f"each side must be at least {min_side}"
        )
    return x


@functools.lru_cache(maxsize=16)  # one object per setting, so jit's cache is reused
def _make_optimizer(optimizer: str, learning_rate: float) -> optax.GradientTransformationExtraArgs:
    if optimizer == "lbfgs":
        return optax.lbfgs()
    if optimizer == "adam":
        return optax.adam(learning_rate)
    raise ValueError(f"`optimizer` (={optimizer!r}) must be 'lbfgs' or 'adam'")


@functools.partial(jax.jit, static_argnames=("layers", "pooling", "preprocessing"))
def _features(prepared, x, *, layers, pooling, preprocessing):
    return fast_vgg.features(prepared, preprocess(x, preprocessing), layers, pooling)


def _unit_weights(weights: StyleWeights) -> tuple[StyleWeights, tuple[float, float, float]]:
    """``weights`` with unit loss weights (the same terms on) and the weights apart."""
    unit = dataclasses.replace(weights, alpha=1.0, beta=1.0, tv_weight=float(weights.tv_weight > 0))
    return unit, (weights.alpha, weights.beta, weights.tv_weight)


def _targets(prepared, content, style, *, weights, pooling, preprocessing):
    """The content layers' features of ``content`` and the style layers' Gram matrices."""
    feats = functools.partial(
        _features, layers=weights.layers, pooling=pooling, preprocessing=preprocessing
    )
    fc = feats(prepared, content[None])
    fs = feats(prepared, style[None])
    content_t = {n: fc[n] for n in weights.content_layers}
    return content_t, {n: gram_matrix(fs[n]) for n in weights.style_layers}


def _objective(prep, content_t, style_g, coef, *, pooling, weights, preprocessing):
    """The loss of an ``(H, W, 3)`` image; ``weights`` name the terms, ``coef`` weighs them."""

    # The network is fast_vgg's: its convolutions keep XLA:CPU's canonical form inside
    # the loops (see cnn_jax.style.fast_vgg).
    def loss_fn(img: Array) -> Array:
        pre = preprocess(img[None], preprocessing)
        feats = fast_vgg.features(prep, pre, weights.layers, pooling)
        _, parts = total_loss(feats, img[None], content_t, style_g, weights)
        return (coef[0] * parts["content"] + coef[1] * parts["style"] + coef[2] * parts["tv"])[0]

    return loss_fn


def gatys_loss(
    params: Mapping[str, Any],
    content: Array,
    style: Array,
    *,
    weights: StyleWeights | None = None,
    pooling: str = "avg",
    preprocessing: str = "torchvision",
    winograd: bool | None = None,
) -> Callable[[Array], Array]:
    """The loss :func:`stylize` minimizes, as a function of the image.

    For optimizers of one's own, or to time or inspect the objective: the returned
    function maps an ``(H, W, 3)`` image (the content's shape) to the scalar
    ``alpha * content + beta * style + tv_weight * tv`` of ``total_loss``, and is
    differentiable and jittable. The targets (the content's features, the style's Gram
    matrices) are computed once, here.

    Args:
      params: VGG-19 params, as for :func:`stylize`.
      content: ``(H, W, 3)`` RGB in [0, 1].
      style: ``(Hs, Ws, 3)`` RGB in [0, 1].
      weights: layers and loss weights (default ``StyleWeights()``).
      pooling: ``'avg'`` or ``'max'``.
      preprocessing: ``'torchvision'`` or ``'caffe'``.
      winograd: as for :func:`stylize`.

    Returns:
      ``loss(image) -> scalar``, in float64 if either image is float64 (with
      ``jax.enable_x64``), else float32.

    Raises:
      ValueError: naming the argument for a bad image, size or pooling.
      TypeError: for a ``winograd`` that is not a bool or None.
    """
    weights = StyleWeights() if weights is None else weights
    need = min_image_size(weights.layers)
    wide = any(np.asarray(x).dtype == np.float64 for x in (content, style))
    dtype = np.float64 if wide else np.float32
    content = _check_image(content, "content", need, dtype)
    style = _check_image(style, "style", need, dtype)
    prepared = _prepare(params, weights, pooling, winograd)
    content_t, style_g = _targets(
        prepared, content, style, weights=weights, pooling=pooling, preprocessing=preprocessing
    )
    unit, coef = _unit_weights(weights)
    return _objective(
        prepared,
        content_t,
        style_g,
        coef,
        pooling=pooling,
        weights=unit,
        preprocessing=preprocessing,
    )


def _prepare(params, weights: StyleWeights, pooling: str, winograd: bool | None):
    """``fast_vgg.prepare`` after checking ``pooling`` and ``winograd``."""
    if pooling not in ("max", "avg"):
        raise ValueError(f"`pooling` (={pooling!r}) must be 'max' or 'avg'")
    if winograd is None:
        winograd = jax.default_backend() == "cpu"
    if not isinstance(winograd, bool):
        raise TypeError(f"`winograd` must be a bool or None, got {winograd!r}")
    return fast_vgg.prepare(params, weights.layers, winograd=winograd)


@functools.partial(jax.jit, static_argnames=("pooling", "weights", "preprocessing", "tx", "n"))
def _run(prep, x, opt_state, content_t, style_g, coef, *, pooling, weights, preprocessing, tx, n):
    # the layers are static, the loss weights (alpha, beta, tv) traced: one compilation
    # serves every weighting.
    loss_fn = _objective(
        prep,
        content_t,
        style_g,
        coef,
        pooling=pooling,
        weights=weights,
        preprocessing=preprocessing,
    )

    # L-BFGS' line search leaves the value and gradient at the new point in its state.
    lbfgs = hasattr(opt_state, "__len__") and any(
        isinstance(s, optax.ScaleByZoomLinesearchState) for s in opt_state
    )
    vg = optax.value_and_grad_from_state(loss_fn) if lbfgs else jax.value_and_grad(loss_fn)

    def step(carry, _):
        x, s = carry
        value, grad = vg(x, state=s) if lbfgs else vg(x)
        updates, s = tx.update(grad, s, x, value=value, grad=grad, value_fn=loss_fn)
        return (optax.apply_updates(x, updates), s), value

    (x, opt_state), values = jax.lax.scan(step, (x, opt_state), length=n)
    return x, opt_state, values, loss_fn(x)


def stylize(
    params: Mapping[str, Any],
    content: Array,
    style: Array,
    *,
    weights: StyleWeights | None = None,
    steps: int = 300,
    optimizer: str = "lbfgs",
    learning_rate: float = 0.02,
    init: str | Array = "noise",
    key: jax.Array | None = None,
    pooling: str = "avg",
    preprocessing: str = "torchvision",
    callback: Callback | None = None,
    callback_every: int | None = None,
    winograd: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Optimizes an image for Gatys et al.'s loss.

    Args:
      params: VGG-19 params (``cnn_jax.models.VGG19``'s ``params`` or
        ``cnn_jax.style.load_vgg19``'s result).
      content: ``(H, W, 3)`` RGB in [0, 1]; its size is the output's.
      style: ``(Hs, Ws, 3)`` RGB in [0, 1] (any size).
      weights: layers and loss weights (default ``StyleWeights()``; ``alpha = 0`` or
        no content layers: a pure style reconstruction; ``beta = 0``: a pure content
        reconstruction).
      steps: optimizer steps (L-BFGS iterations or Adam steps).
      optimizer: ``'lbfgs'`` or ``'adam'``.
      learning_rate: Adam's learning rate on [0, 1] pixels.
      init: ``'noise'`` (uniform white noise in [0, 1], needs ``key``), ``'content'``
        or an ``(H, W, 3)`` array.
      key: the PRNG key of the noise.
      pooling: ``'avg'`` (the paper's) or ``'max'``.
      preprocessing: ``'torchvision'`` or ``'caffe'``, as the weights were trained.
      callback: called as ``callback(step, image, {'loss': ...})`` after every chunk.
      callback_every: steps per jit-compiled chunk (default: all steps in one).
      winograd: compute VGG-19's wide layers on small feature maps by Winograd's
        F(4x4, 3x3) (``fast_vgg.prepare``; float32 rounding up to about ``2e-5`` of a
        layer's largest output); ``False``: direct convolutions only; ``None``
        (default): on when JAX's default backend is the CPU, where it was measured
        faster (GPU and TPU libraries choose their own convolution algorithms).

    Returns:
      ``(image (H, W, 3) clipped to [0, 1], losses (steps + 1,))``: ``losses[i]`` is
      the loss before step ``i``, the last one after the last step.

    Raises:
      ValueError: naming the argument for a bad image, size, optimizer, init or
        step count.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` (={steps!r}) must be a positive int")
    every = steps if callback_every is None else callback_every
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"`callback_every` (={callback_every!r}) must be a positive int")
    weights = StyleWeights() if weights is None else weights
    need = min_image_size(weights.layers)
    content = _check_image(content, "content", need)
    style = _check_image(style, "style", need)
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"`optimizer` (={optimizer!r}) must be 'lbfgs' or 'adam'")
    tx = _make_optimizer(optimizer, float(learning_rate))
    prepared = _prepare(params, weights, pooling, winograd)
    content_t, style_g = _targets(
        prepared, content, style, weights=weights, pooling=pooling, preprocessing=preprocessing
    )
    if isinstance(init, str) and init == "noise":
        if key is None:
            raise ValueError("`key` is needed for init='noise'")
        x = jax.random.uniform(key, content.shape, jnp.float32)
    elif isinstance(init, str) and init == "content":
        x = jnp.asarray(content)
    elif isinstance(init, str):
        raise ValueError(f"`init` (={init!r}) must be 'noise', 'content' or an array")
    else:
        x = jnp.asarray(_check_image(init, "init", need))
        if x.shape != content.shape:
            raise ValueError(f"`init` {x.shape} must have the content's shape {content.shape}")
    state = tx.init(x)
    unit, coef = _unit_weights(weights)
    coef = jnp.asarray(coef, jnp.float32)
    losses: list[np.ndarray] = []
    done = 0
    while done < steps:
        n = min(every, steps - done)
        x, state, values, last = _run(
            prepared,
            x,
            state,
            content_t,
            style_g,
            coef,
            pooling=pooling,
            weights=unit,
            preprocessing=preprocessing,
            tx=tx,
            n=n,
        )
        losses.append(np.asarray(values))
        done += n
        if callback is not None:
            callback(done, np.clip(np.asarray(x), 0.0, 1.0), {"loss": float(last)})
    losses.append(np.asarray(last)[None])
    return np.clip(np.asarray(x), 0.0, 1.0), np.concatenate(losses)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes so that the longer side is ``size`` (bilinear, antialiased)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)), 3)
    return np.asarray(jax.image.resize(jnp.asarray(image), shape, "linear", antialias=True))


def stylize_multiscale(
    params: Mapping[str, Any],
    content: Array,
    style: Array,
    *,
    sizes: Sequence[int],
    steps: int | Sequence[int] = 300,
    key: jax.Array | None = None,
    init: str = "noise",
    **kwargs: Any,
) -> np.ndarray:
    """Coarse-to-fine :func:`stylize`: each scale starts from the previous result.

    Args:
      params: VGG-19 params.
      content: ``(H, W, 3)`` in [0, 1]; resized so its longer side is each size.
      style: resized by the same factor as the content at each scale.
      sizes: increasing longer-side sizes, e.g. ``(128, 256, 512)``.
      steps: steps per scale (one int or one per size).
      key: the PRNG key of the first scale's noise.
      init: the first scale's init, ``'noise'`` or ``'content'``.
      **kwargs: passed to :func:`stylize` (weights, optimizer, pooling, ...).

    Returns:
      The image at the last size.

    Raises:
      ValueError: for sizes that are empty or not increasing, or steps of another length.
    """
    sizes = tuple(sizes)
    if not sizes or any(b <= a for a, b in itertools.pairwise(sizes)):
        raise ValueError(f"`sizes` (={sizes!r}) must be a non-empty increasing sequence")
    per = (steps,) * len(sizes) if isinstance(steps, int) else tuple(steps)
    if len(per) != len(sizes):
        raise ValueError(f"`steps` (={steps!r}) must be an int or one per size")
    content = np.asarray(content, np.float32)
    style = np.asarray(style, np.float32)
    x: Any = init
    for size, n in zip(sizes, per, strict=True):
        c = _resize(content, size)
        s = _resize(style, max(1, round(size * max(style.shape[:2]) / max(content.shape[:2]))))
        if not isinstance(x, str):
            x = np.asarray(jax.image.resize(jnp.asarray(x), c.shape, "linear"))
        x, _ = stylize(params, c, s, steps=n, init=x, key=key, **kwargs)
    return x
