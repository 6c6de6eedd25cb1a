"""airbench94's network, its initialization and its optimizer in JAX/flax/optax.

The layers (exact GELU, Dirac initialization, the three max-pooling formulations of
``POOLS``, the BatchNorms of ``NORMS``), the network :class:`AirbenchNet`, the
patch-whitening initialization, the run options (:class:`JaxOptions`), the training
state and PyTorch's Nesterov SGD with the recipe's two groups. The run itself is
:class:`benchmarks.airbench.airbench94_jax.JaxAirbench`; its module docstring describes
the recipe and the speed options.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util
from jax import lax

from benchmarks.airbench import CIFAR_MEAN, CIFAR_STD, Recipe
from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.layers.initializers import get_initializer

__all__ = [
    "DTYPES",
    "NORMS",
    "POOLS",
    "AirbenchNet",
    "ConvGroup",
    "JaxOptions",
    "OnePassBatchNorm",
    "TrainState",
    "dirac_init",
    "exact_gelu",
    "make_optimizer",
    "max_pool_cnn_jax",
    "max_pool_lax",
    "max_pool_reshape",
    "merge_params",
    "normalize",
    "split_params",
    "whitening_kernel",
]

Array = Any
ModuleDef = Any
PyTree = Any

DTYPES = {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32}


# ----------------------------------------------------------------------------- layers


def exact_gelu(x: Array) -> Array:
    """GELU with the exact erf form (PyTorch's ``nn.GELU()`` default), in float32."""
    return jax.nn.gelu(x.astype(jnp.promote_types(x.dtype, jnp.float32)), approximate=False)


def dirac_init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
    """PyTorch's default conv init with the first ``C_in`` filters set to the identity.

    ``kaiming_uniform_(a=sqrt(5))`` (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), then, as
    ``torch.nn.init.dirac_(w[:C_in])``: filters ``0..m-1`` (``m = min(C_in, C_out)``) are
    zero except ``kernel[center, i, i] = 1``: an implicit residual at initialization.

    Args:
      key: PRNG key.
      shape: ``(*window, C_in, C_out)``.
      dtype: the dtype.

    Returns:
      The kernel.
    """
    kernel = get_initializer("torch_default")(key, shape, dtype)
    *window, c_in, c_out = shape
    m = min(c_in, c_out)
    center = tuple(k // 2 for k in window)
    ident = jnp.zeros((*window, c_in, m), dtype)
    ident = ident.at[(*center, jnp.arange(m), jnp.arange(m))].set(1)
    return kernel.at[..., :m].set(ident)


def max_pool_reshape(x: Array, window: int) -> Array:
    """Non-overlapping ``window x window`` max pooling (floor mode) by reshape and max."""
    n, h, w, c = x.shape
    ho, wo = h // window, w // window
    x = x[:, : ho * window, : wo * window]
    return jnp.max(x.reshape(n, ho, window, wo, window, c), axis=(2, 4))


def max_pool_lax(x: Array, window: int) -> Array:
    """Non-overlapping max pooling by ``lax.reduce_window`` (floor mode)."""
    dims = (1, window, window, 1)
    return lax.reduce_window(x, -jnp.inf, lax.max, dims, dims, "VALID")


def max_pool_cnn_jax(x: Array, window: int) -> Array:
    """Non-overlapping max pooling by ``cnn_jax.ops.max_pool``."""
    return ops.max_pool(x, window)


POOLS: dict[str, Callable[[Array, int], Array]] = {
    "reshape": max_pool_reshape,
    "lax": max_pool_lax,
    "cnn_jax": max_pool_cnn_jax,
}


class OnePassBatchNorm(nn.Module):
    """``cnn_jax.layers.BatchNorm``'s semantics with both moments from one pass.

    The batch variance is ``E[x^2] - E[x]^2`` (clipped at 0) in float32, so XLA reduces
    both sums in one pass over the activation; fine for activations whose mean is not
    thousands of standard deviations. Parameters ``scale``/``bias`` and statistics
    ``mean``/``var`` (unbiased running variance, flax-convention ``momentum``) as there.

    Attributes:
      momentum: running-average decay.
      epsilon: added to the variance.
      dtype: output dtype (``None``: float32).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Normalizes ``x`` (``(N, ..., C)``) over all axes but the last."""
        c = x.shape[-1]
        axes = tuple(range(x.ndim - 1))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        xs = x.astype(jnp.float32)
        if train:
            mean = jnp.mean(xs, axis=axes)
            var = jnp.maximum(jnp.mean(jnp.square(xs), axis=axes) - jnp.square(mean), 0.0)
            if not self.is_initializing():
                n = math.prod(x.shape[:-1])
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1 - m) * mean
                ra_var.value = m * ra_var.value + (1 - m) * var * (n / max(n - 1, 1))
        else:
            mean, var = ra_mean.value, ra_var.value
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        y = (xs - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias
        return y.astype(self.dtype or jnp.float32)


NORMS: dict[str, ModuleDef] = {"cnn_jax": BatchNorm, "onepass": OnePassBatchNorm}


# ----------------------------------------------------------------------------- network


class ConvGroup(nn.Module):
    """``conv3x3 -> maxpool2 -> BN -> act -> conv3x3 -> BN -> act`` (airbench94).

    Attributes:
      features: output channels.
      conv: conv module factory (``features`` -> module), already configured.
      norm: norm module factory, already configured.
      act: activation.
      pool: ``(x, window) -> x`` max pooling.
      dtype: the dtype the activations are cast to after each activation.
    """

    features: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable[[Array], Array]
    pool: Callable[[Array, int], Array]
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the group; ``train`` selects batch statistics."""
        x = self.pool(self.conv(self.features, name="conv1")(x), 2)
        x = self.act(self.norm(name="norm1")(x, train=train)).astype(self.dtype or x.dtype)
        x = self.conv(self.features, name="conv2")(x)
        return self.act(self.norm(name="norm2")(x, train=train)).astype(self.dtype or x.dtype)


class AirbenchNet(nn.Module):
    """The airbench94 network, channels-last (Jordan 2024; hlb-CIFAR10; Page 2018).

    ``whiten`` (``k x k`` VALID conv with bias, ``2 * 3 * k^2`` filters) -> GELU -> three
    :class:`ConvGroup` -> max pool over the remaining ``3 x 3`` -> linear (no bias)
    -> times ``scaling_factor``.

    Attributes:
      widths: channels of the three groups.
      whiten_kernel_size: patch size of the whitening layer.
      scaling_factor: multiplies the logits.
      num_classes: outputs.
      batchnorm_momentum: flax-convention momentum of the BatchNorms.
      batchnorm_eps: their epsilon.
      conv: the conv layer (``cnn_jax.layers.Conv``).
      norm: the BatchNorm layer (``cnn_jax.layers.BatchNorm`` or :class:`OnePassBatchNorm`).
      act: activation (exact GELU).
      pool: ``(x, window) -> x`` max pooling.
      dtype: compute dtype (``None``: float32).
    """

    widths: Sequence[int] = (64, 256, 256)
    whiten_kernel_size: int = 2
    scaling_factor: float = 1 / 9
    num_classes: int = 10
    batchnorm_momentum: float = 0.6
    batchnorm_eps: float = 1e-12
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = exact_gelu
    pool: Callable[[Array, int], Array] = max_pool_reshape
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Returns ``(logits float32 (N, num_classes), features)``.

        Args:
          x: normalized images ``(N, 32, 32, 3)``.
          train: batch statistics (and their running averages updated) or running ones.
        """
        dtype = self.dtype or jnp.float32
        x = jnp.asarray(x, dtype)
        k = self.whiten_kernel_size
        features = {}
        x = self.conv(2 * 3 * k * k, k, padding="VALID", use_bias=True, dtype=dtype, name="whiten")(
            x
        )
        x = self.act(x).astype(dtype)
        features["whiten"] = x
        conv = functools.partial(
            self.conv,
            kernel_size=3,
            padding="SAME",
            use_bias=False,
            kernel_init=dirac_init,
            dtype=dtype,
        )
        norm = functools.partial(
            self.norm, momentum=self.batchnorm_momentum, epsilon=self.batchnorm_eps
        )
        for i, width in enumerate(self.widths):
            x = ConvGroup(width, conv, norm, self.act, self.pool, dtype, name=f"group{i + 1}")(
                x, train=train
            )
            features[f"group{i + 1}"] = x
        x = self.pool(x, x.shape[1]).reshape(x.shape[0], -1)
        features["pre_logits"] = x
        kernel_init = get_initializer("torch_default")
        x = nn.Dense(
            self.num_classes, use_bias=False, kernel_init=kernel_init, dtype=dtype, name="head"
        )(x)
        logits = (x * self.scaling_factor).astype(jnp.float32)
        return logits, features


# ------------------------------------------------------------------------ whitening init


def normalize(images_u8: Array, dtype: Any) -> Array:
    """uint8 NHWC -> ``((x / 255) - mean) / std`` in ``dtype``."""
    x = images_u8.astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(CIFAR_MEAN, jnp.float32)) / jnp.asarray(CIFAR_STD, jnp.float32)
    return x.astype(dtype)


def whitening_kernel(images: Array, kernel_size: int, eps: float) -> Array:
    """The patch-whitening kernel ``(k, k, C, 2 C k^2)`` from normalized NHWC images.

    The eigenvectors of the uncentered covariance of all ``k x k`` patches (stride 1), in
    decreasing order of eigenvalue and divided by ``sqrt(eigenvalue + eps)``, then their
    negations (Page 2018; hlb-CIFAR10; airbench94): the first ``C k^2`` filters map the
    patches to (nearly) uncorrelated, unit-variance outputs.

    Args:
      images: ``(N, H, W, C)``, any float dtype (the covariance is float32, full
        precision).
      kernel_size: ``k``.
      eps: added to the eigenvalues.

    Returns:
      float32 kernel, HWIO.
    """
    x = images.astype(jnp.float32)
    _, h, w, c = x.shape
    k = kernel_size
    taps = [x[:, dy : h - k + 1 + dy, dx : w - k + 1 + dx, :] for dy in range(k) for dx in range(k)]
    patches = jnp.stack(taps, axis=3).reshape(-1, k * k * c)  # (h, w, c) order
    cov = jnp.matmul(patches.T, patches, precision=lax.Precision.HIGHEST) / patches.shape[0]
    eigenvalues, eigenvectors = jnp.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    scaled = (eigenvectors / jnp.sqrt(eigenvalues + eps)).reshape(k, k, c, k * k * c)
    return jnp.concatenate([scaled, -scaled], axis=-1)


# ---------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class JaxOptions:
    """How the JAX program runs (none of this changes the recipe).

    Attributes:
      dtype: compute dtype: ``'float16'`` (as the reference), ``'bfloat16'`` or
        ``'float32'``.
      pool: ``'reshape'``, ``'lax'`` or ``'cnn_jax'`` (see ``benchmarks.airbench.airbench94_jax``).
      bn: ``'cnn_jax'`` or ``'onepass'``.
      loop: ``'step'`` (one program per step) or ``'scan'`` (one program per epoch).
      prng: the ``jax.random`` implementation: ``'rbg'`` (default: XLA's
        RngBitGenerator, much faster to compile on XLA:CPU than threefry; see
        docs/ENGINEERING.md, "CPU tuning"), ``'unsafe_rbg'`` or ``'threefry2x32'``
        (JAX's default).
    """

    dtype: str = "float16"
    pool: str = "reshape"
    bn: str = "cnn_jax"
    loop: str = "step"
    prng: str = "rbg"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("dtype", DTYPES),
            ("pool", POOLS),
            ("bn", NORMS),
            ("loop", ("scan", "step")),
            ("prng", ("rbg", "unsafe_rbg", "threefry2x32")),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"`{name}` (={value!r}) must be one of {', '.join(allowed)}")

    def label(self) -> str:
        """A short name, e.g. ``jax[float16,pool=reshape,bn=cnn_jax,scan]``."""
        prng = "" if self.prng == "rbg" else f",{self.prng}"
        return f"jax[{self.dtype},pool={self.pool},bn={self.bn},{self.loop}{prng}]"


class TrainState(NamedTuple):
    """Everything a run carries from step to step (a pytree).

    Attributes:
      trainable: the parameters SGD updates.
      frozen: the whitening kernel and the BatchNorm scales.
      batch_stats: BatchNorm running statistics.
      opt_state: optax state (momentum and step counts).
      ema: lookahead EMA of ``{'trainable': ..., 'batch_stats': ...}``.
      ema_on: whether the EMA has been started.
      step: steps done (int32).
    """

    trainable: PyTree
    frozen: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    ema: PyTree
    ema_on: Array
    step: Array


def _is_frozen(path: tuple[str, ...]) -> bool:
    """The whitening kernel and the BatchNorm scales are never trained (as the reference)."""
    return path == ("whiten", "kernel") or path[-1] == "scale"


def split_params(params: PyTree) -> tuple[PyTree, PyTree]:
    """``params`` -> ``(trainable, frozen)`` nested dicts."""
    flat = traverse_util.flatten_dict(params)
    trainable = {k: v for k, v in flat.items() if not _is_frozen(k)}
    frozen = {k: v for k, v in flat.items() if _is_frozen(k)}
    return traverse_util.unflatten_dict(trainable), traverse_util.unflatten_dict(frozen)


def merge_params(trainable: PyTree, frozen: PyTree) -> PyTree:
    """Inverse of :func:`split_params`."""
    flat = {**traverse_util.flatten_dict(trainable), **traverse_util.flatten_dict(frozen)}
    return traverse_util.unflatten_dict(flat)


def make_optimizer(recipe: Recipe, total_steps: int) -> optax.GradientTransformation:
    """PyTorch's Nesterov SGD with airbench94's two groups and triangular schedule.

    Per group: ``g + wd_group * p`` (``add_decayed_weights``), ``trace(nesterov)``
    (``b = m b + g; u = g + m b``), then ``-lr_group * factor[step]``. BatchNorm biases
    (paths through a ``norm*`` module) use ``lr_bias``, the others ``lr``.
    """
    hp = recipe.sgd_hyperparameters()
    factors = jnp.asarray(recipe.lr_factors(total_steps), jnp.float32)

    def group(lr: float, wd_over_lr: float) -> optax.GradientTransformation:
        return optax.chain(
            optax.add_decayed_weights(wd_over_lr),
            optax.trace(decay=recipe.momentum, nesterov=True),
            optax.scale_by_schedule(lambda count: -lr * factors[count]),
        )

    def labels(tree: PyTree) -> PyTree:
        flat = traverse_util.flatten_dict(tree)
        out = {k: ("bias" if any(s.startswith("norm") for s in k) else "other") for k in flat}
        return traverse_util.unflatten_dict(out)

    return optax.multi_transform(
        {
            "bias": group(hp["lr_bias"], hp["wd_over_lr_bias"]),
            "other": group(hp["lr"], hp["wd_over_lr"]),
        },
        labels,
    )
