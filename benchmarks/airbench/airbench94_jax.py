"""airbench94 in JAX/flax/optax: the recipe of ``airbench94.py``, the whole run on device.

The recipe (network, initialization, optimizer, schedule, lookahead, augmentation,
test-time augmentation) is the one described in
:mod:`benchmarks.airbench.airbench94_torch`, from Jordan (2024), "94% on CIFAR-10 in
3.29 seconds on a single GPU" (arXiv:2404.00498). Here it is written with
``cnn_jax.layers`` (``Conv``, ``BatchNorm``) in channels-last layout:

* The network is :class:`AirbenchNet`; its module names (``whiten``, ``group1..3`` with
  ``conv1/norm1/conv2/norm2``, ``head``) mirror the PyTorch reference's, so that
  ``cnn_jax.weights``' default key rule maps its weights. BatchNorms keep a ``scale``
  parameter, frozen at 1 as in the reference (never passed to the optimizer), so the
  parameter count is the reference's (1,972,792). Computation runs in ``dtype``
  (float16 by default, as the reference) with float32 parameters, float32 BatchNorm
  statistics, float32 GELU (the reference's half GELU computes internally in float32)
  and a float32 loss.
* Optimizer: ``optax`` Nesterov SGD in PyTorch's form (weight decay added to the
  gradient, then ``trace(nesterov=True)``, then ``-lr * factor[step]``), with the two
  learning-rate groups; the whitening kernel and the BatchNorm scales are not trained,
  the whitening bias only during the first ``whiten_bias_epochs`` epochs.
* The lookahead EMA covers the trainable parameters and the BatchNorm statistics and is
  applied with ``jnp.where`` inside the compiled step (no host round trip).

Everything of a run is on the device: the uint8 images are put there once; the
normalization, the random flip, the reflect padding (once per run), the per-epoch
permutation and crop offsets, the per-batch gather, crop and alternating flip, the
training steps and the TTA evaluation are compiled XLA programs. Two ways to run the
steps of an epoch (``loop``), which give bit-identical runs:

* ``'step'`` (default): one jitted step (state donated) called from Python, plus small
  begin/end-of-epoch programs. Dispatch is asynchronous, so on a GPU it costs nothing
  as long as a step (milliseconds here) is longer than its dispatch (well under one).
* ``'scan'``: one program per epoch, ``lax.scan`` over its steps, the state donated: no
  per-step dispatch at all; 2 compiled variants (full epoch and the shorter last one).

The default is the one measured faster: on XLA:CPU (2-core EPYC, jax 0.10.2, a
16/32/32-wide net at batch 64, 16 steps an epoch, the two interleaved) an epoch took
8.3-11.4 s as steps and 13.5-17.0 s as a scan. On a GPU compare both in one job
(``run.py --jax_loop=step,scan``).

Every program is compiled ahead of time (``jit(...).lower(...).compile()``) in
:meth:`JaxAirbench.compile`, whose duration is reported separately; runs then only
execute compiled programs, and the timed parts end with ``jax.block_until_ready``.

Speed options (all compute the same function; the tests check they agree):
``pool='reshape'`` (non-overlapping max pooling as a reshape and a max: its gradient is an
elementwise mask that XLA fuses), ``'lax'`` (``lax.reduce_window``, gradient by
``select_and_scatter_add``) or ``'cnn_jax'`` (``cnn_jax.ops.max_pool``, gradient
gathered at PyTorch's arg-max; fast on CPU); ``bn='cnn_jax'``
(``cnn_jax.layers.BatchNorm``, two-pass variance) or ``'onepass'`` (``E[x^2] - E[x]^2``:
both sums in one pass over the activation).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from jax import lax

from benchmarks.airbench import CIFAR_MEAN, CIFAR_STD, Recipe
from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.layers.initializers import get_initializer

__all__ = [
    "AirbenchNet",
    "ConvGroup",
    "JaxAirbench",
    "JaxOptions",
    "OnePassBatchNorm",
    "TrainState",
    "dirac_init",
    "exact_gelu",
    "max_pool_lax",
    "max_pool_reshape",
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
      pool: ``'reshape'``, ``'lax'`` or ``'cnn_jax'`` (see the module docstring).
      bn: ``'cnn_jax'`` or ``'onepass'``.
      loop: ``'step'`` (one program per step) or ``'scan'`` (one program per epoch).
      prng: the ``jax.random`` implementation: ``'rbg'`` (default: XLA's
        RngBitGenerator; here XLA:CPU took 8-9 s to compile each ``threefry2x32`` call
        site, ``rbg`` 0.2-0.5 s) or ``'threefry2x32'`` (JAX's default).
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


class JaxAirbench:
    """One process's JAX airbench94: data on the device, compiled programs, runs by seed.

    Args:
      train: ``(images uint8 (N, 32, 32, 3), labels int)``.
      test: the same for the test set.
      recipe: the hyperparameters.
      options: how to run (:class:`JaxOptions`).
      device: the JAX device (default: the first one).
    """

    def __init__(
        self,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        recipe: Recipe | None = None,
        options: JaxOptions | None = None,
        device: Any = None,
    ) -> None:
        self.recipe = r = recipe or Recipe()
        self.options = options or JaxOptions()
        self.device = device or jax.devices()[0]
        self.dtype = DTYPES[self.options.dtype]
        put = functools.partial(jax.device_put, device=self.device)
        self.train_images = put(np.asarray(train[0], np.uint8))
        self.train_labels = put(np.asarray(train[1], np.int32))
        self.test_images = put(np.asarray(test[0], np.uint8))
        self.test_labels = put(np.asarray(test[1], np.int32))
        self.num_train = len(train[0])
        self.steps_per_epoch = r.steps_per_epoch(self.num_train)
        self.total_steps = r.total_steps(self.num_train)
        self.epoch_steps = r.epoch_steps(self.num_train)
        self.model = AirbenchNet(
            widths=tuple(r.widths),
            whiten_kernel_size=r.whiten_kernel_size,
            scaling_factor=r.scaling_factor,
            batchnorm_momentum=r.batchnorm_momentum,
            batchnorm_eps=r.batchnorm_eps,
            norm=NORMS[self.options.bn],
            pool=POOLS[self.options.pool],
            dtype=self.dtype,
        )
        self.tx = make_optimizer(r, self.total_steps)
        self.compiled: dict[str, Any] = {}
        self.compile_times: dict[str, float] = {}

    def key(self, seed: int) -> Array:
        """A PRNG key of the configured implementation."""
        return jax.random.key(seed, impl=self.options.prng)

    # -- pure functions (jitted in `compile`) ------------------------------------------

    def init_state(self, key: Array) -> TrainState:
        """A fresh network and optimizer state (the whitening kernel still random)."""
        x = jnp.zeros((1, 32, 32, 3), self.dtype)
        variables = self.model.init(key, x, train=False)
        trainable, frozen = split_params(variables["params"])
        stats = variables["batch_stats"]
        return TrainState(
            trainable=trainable,
            frozen=frozen,
            batch_stats=stats,
            opt_state=self.tx.init(trainable),
            ema={"trainable": trainable, "batch_stats": stats},
            ema_on=jnp.zeros((), bool),
            step=jnp.zeros((), jnp.int32),
        )

    def whiten(self, state: TrainState, train_images: Array) -> TrainState:
        """Sets the whitening kernel from the first ``whiten_samples`` training images."""
        r = self.recipe
        x = normalize(train_images[: r.whiten_samples], self.dtype)
        kernel = whitening_kernel(x, r.whiten_kernel_size, r.whiten_eps)
        frozen = {**state.frozen, "whiten": {**state.frozen["whiten"], "kernel": kernel}}
        return state._replace(frozen=frozen)

    def prepare(self, train_images: Array, key: Array) -> Array:
        """Normalized, randomly flipped (once per run) and reflect-padded training images."""
        r = self.recipe
        x = normalize(train_images, self.dtype)
        if r.flip:
            mask = jax.random.uniform(key, (x.shape[0],)) < 0.5
            x = jnp.where(mask[:, None, None, None], x[:, :, ::-1, :], x)
        if r.translate > 0:
            t = r.translate
            x = jnp.pad(x, ((0, 0), (t, t), (t, t), (0, 0)), mode="reflect")
        return x

    def epoch_randomness(self, key: Array) -> tuple[Array, Array]:
        """This epoch's order (the first ``steps * batch`` of a permutation) and offsets."""
        k_perm, k_shift = jax.random.split(key)
        used = self.steps_per_epoch * self.recipe.batch_size
        order = jax.random.permutation(k_perm, self.num_train)[:used].astype(jnp.int32)
        span = 2 * self.recipe.translate + 1
        shifts = jax.random.randint(k_shift, (self.num_train, 2), 0, span, jnp.int32)
        return order, shifts

    def get_batch(
        self, padded: Array, labels: Array, order: Array, shifts: Array, epoch: Array, i: Array
    ) -> tuple[Array, Array]:
        """Batch ``i``: gathered, cropped at its images' offsets, flipped on odd epochs."""
        r = self.recipe
        bs = r.batch_size
        idx = lax.dynamic_slice_in_dim(order, i * bs, bs)
        x = jnp.take(padded, idx, axis=0)
        if r.translate > 0:
            size = padded.shape[1] - 2 * r.translate
            s = jnp.take(shifts, idx, axis=0)

            def crop(img: Array, off: Array) -> Array:
                return lax.dynamic_slice(img, (off[0], off[1], 0), (size, size, img.shape[-1]))

            x = jax.vmap(crop)(x, s)
        if r.flip:
            x = jnp.where(epoch % 2 == 1, x[:, :, ::-1, :], x)
        return x, jnp.take(labels, idx, axis=0)

    def loss_fn(
        self, trainable: PyTree, frozen: PyTree, stats: PyTree, x: Array, y: Array
    ) -> tuple[Array, tuple[PyTree, Array]]:
        """Summed label-smoothed cross-entropy (float32), new BN statistics, logits."""
        variables = {"params": merge_params(trainable, frozen), "batch_stats": stats}
        (logits, _), updates = self.model.apply(variables, x, train=True, mutable=["batch_stats"])
        eps = self.recipe.label_smoothing
        targets = jax.nn.one_hot(y, logits.shape[-1]) * (1 - eps) + eps / logits.shape[-1]
        loss = optax.softmax_cross_entropy(logits, targets).sum()
        return loss, (updates["batch_stats"], logits)

    def train_step(
        self, state: TrainState, x: Array, y: Array, epoch: Array
    ) -> tuple[TrainState, dict[str, Array]]:
        """One SGD step, then the lookahead update when due."""
        r = self.recipe
        grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
        (loss, (stats, logits)), grads = grad_fn(
            state.trainable, state.frozen, state.batch_stats, x, y
        )
        updates, opt_state = self.tx.update(grads, state.opt_state, state.trainable)
        gate = (epoch < r.whiten_bias_epochs).astype(jnp.float32)
        whiten = {**updates["whiten"], "bias": updates["whiten"]["bias"] * gate}
        trainable = optax.apply_updates(state.trainable, {**updates, "whiten": whiten})
        step = state.step + 1

        # Lookahead: from epoch `ema_start_epochs`, every n steps: e <- rho e + (1 - rho) p,
        # p <- e; the first time only starts the EMA (rho = 0).
        due = (epoch >= r.ema_start_epochs) & (step % r.ema_every_n_steps == 0)
        base = r.ema_decay_base**r.ema_every_n_steps
        frac = step.astype(jnp.float32) / self.total_steps
        rho = jnp.where(state.ema_on, base * frac**r.ema_decay_pow, 0.0)
        current = {"trainable": trainable, "batch_stats": stats}
        ema = jax.tree.map(
            lambda e, p: jnp.where(due, rho * e + (1 - rho) * p, e), state.ema, current
        )
        current = jax.tree.map(lambda e, p: jnp.where(due, e, p), ema, current)
        new_state = TrainState(
            trainable=current["trainable"],
            frozen=state.frozen,
            batch_stats=current["batch_stats"],
            opt_state=opt_state,
            ema=ema,
            ema_on=state.ema_on | due,
            step=step,
        )
        accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
        return new_state, {"loss": loss / y.shape[0], "accuracy": accuracy}

    def end_epoch(self, state: TrainState) -> TrainState:
        """The weights and statistics are reset to the EMA at the end of every epoch."""
        cur = {"trainable": state.trainable, "batch_stats": state.batch_stats}
        cur = jax.tree.map(lambda e, p: jnp.where(state.ema_on, e, p), state.ema, cur)
        return state._replace(trainable=cur["trainable"], batch_stats=cur["batch_stats"])

    def train_epoch(
        self,
        state: TrainState,
        padded: Array,
        labels: Array,
        epoch: Array,
        key: Array,
        *,
        num_steps: int,
    ) -> tuple[TrainState, dict[str, Array]]:
        """One epoch of ``num_steps`` steps as a ``lax.scan`` (the ``'scan'`` loop)."""
        order, shifts = self.epoch_randomness(key)

        def body(state: TrainState, i: Array) -> tuple[TrainState, dict[str, Array]]:
            x, y = self.get_batch(padded, labels, order, shifts, epoch, i)
            return self.train_step(state, x, y, epoch)

        state, metrics = lax.scan(body, state, jnp.arange(num_steps, dtype=jnp.int32))
        return self.end_epoch(state), metrics

    def step_program(
        self,
        state: TrainState,
        padded: Array,
        labels: Array,
        order: Array,
        shifts: Array,
        epoch: Array,
        i: Array,
    ) -> tuple[TrainState, dict[str, Array]]:
        """Batch gathering and one step (the ``'step'`` loop)."""
        x, y = self.get_batch(padded, labels, order, shifts, epoch, i)
        return self.train_step(state, x, y, epoch)

    def tta_logits(self, state: TrainState, x: Array, level: int) -> Array:
        """Logits of normalized images averaged over the TTA views of ``level`` (0-2)."""
        variables = {
            "params": merge_params(state.trainable, state.frozen),
            "batch_stats": state.batch_stats,
        }

        def net(z: Array) -> Array:
            return self.model.apply(variables, z, train=False)[0]

        def mirror(z: Array) -> Array:
            return 0.5 * net(z) + 0.5 * net(z[:, :, ::-1, :])

        if level == 0:
            return net(x)
        if level == 1:
            return mirror(x)
        h, w = x.shape[1:3]
        p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        translated = 0.5 * (mirror(p[:, :h, :w]) + mirror(p[:, 2 : h + 2, 2 : w + 2]))
        return 0.5 * mirror(x) + 0.5 * translated

    def evaluate(self, state: TrainState, images: Array, labels: Array, level: int) -> Array:
        """Test accuracy with TTA ``level``, in batches of ``eval_batch_size`` (``lax.map``)."""
        r = self.recipe
        n = images.shape[0]
        bs = min(r.eval_batch_size, n)
        chunks = -(-n // bs)
        x = normalize(images, self.dtype)
        x = jnp.pad(x, ((0, chunks * bs - n), (0, 0), (0, 0), (0, 0)))
        x = x.reshape(chunks, bs, *x.shape[1:])
        fn = functools.partial(self.tta_logits, state, level=level)
        logits = lax.map(fn, x).reshape(chunks * bs, -1)[:n]
        return jnp.mean(jnp.argmax(logits, -1) == labels)

    # -- compilation and runs ---------------------------------------------------------

    def _aot(self, name: str, fn: Callable, *args: Any, donate: tuple[int, ...] = ()) -> Any:
        """``jit(fn).lower(*args).compile()``, timed into ``compile_times``."""
        t0 = time.perf_counter()
        compiled = jax.jit(fn, donate_argnums=donate).lower(*args).compile()
        self.compile_times[name] = time.perf_counter() - t0
        self.compiled[name] = compiled
        return compiled

    def compile(self) -> float:
        """Compiles every program ahead of time; returns the total compile time (s)."""
        key = self.key(0)
        epoch = np.int32(0)
        init = self._aot("init", self.init_state, key)
        state = init(key)
        self._aot("whiten", self.whiten, state, self.train_images)
        prepare = self._aot("prepare", self.prepare, self.train_images, key)
        padded = prepare(self.train_images, key)
        if self.options.loop == "scan":
            for n in sorted(set(self.epoch_steps)):
                fn = functools.partial(self.train_epoch, num_steps=n)
                self._aot(
                    f"epoch{n}", fn, state, padded, self.train_labels, epoch, key, donate=(0,)
                )
        else:
            order, shifts = self._aot("epoch_randomness", self.epoch_randomness, key)(key)
            i = np.int32(0)
            args = (state, padded, self.train_labels, order, shifts, epoch, i)
            self._aot("step", self.step_program, *args, donate=(0,))
            self._aot("end_epoch", self.end_epoch, state, donate=(0,))
        self._compile_eval(self.recipe.tta_level, state)
        return sum(self.compile_times.values())

    def _compile_eval(self, level: int, state: TrainState) -> Any:
        """The evaluation program with TTA ``level`` (compiled once)."""
        name = f"eval_tta{level}"
        if name not in self.compiled:
            fn = functools.partial(self.evaluate, level=level)
            self._aot(name, fn, state, self.test_images, self.test_labels)
        return self.compiled[name]

    def run(
        self,
        seed: int,
        *,
        dummy_labels: bool = False,
        epoch_eval: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """One training run (compiles first if :meth:`compile` was not called).

        Args:
          seed: the run's PRNG seed (init, flips, orders, crops).
          dummy_labels: train on random labels (warm-up).
          epoch_eval: evaluate (untimed, without TTA) after every epoch.
          log: called with a line per epoch when given.

        Returns:
          The same keys as :meth:`TorchAirbench.run
          <benchmarks.airbench.airbench94_torch.TorchAirbench.run>`.
        """
        if not self.compiled:
            self.compile()
        c = self.compiled
        r = self.recipe
        key = self.key(seed)
        k_init, k_flip, k_epochs, k_dummy = jax.random.split(key, 4)
        labels = self.train_labels
        if dummy_labels:
            labels = jax.random.randint(k_dummy, labels.shape, 0, 10, jnp.int32)
        state = jax.block_until_ready(c["init"](k_init))

        t0 = time.perf_counter()
        state = jax.block_until_ready(c["whiten"](state, self.train_images))
        whiten_time = time.perf_counter() - t0

        epoch_times, epoch_accs = [], []
        padded = None
        metrics: dict[str, Array] = {}
        for epoch, num_steps in enumerate(self.epoch_steps):
            e = np.int32(epoch)
            k_epoch = jax.random.fold_in(k_epochs, epoch)
            t0 = time.perf_counter()
            if epoch == 0:
                padded = c["prepare"](self.train_images, k_flip)
            if self.options.loop == "scan":
                state, metrics = c[f"epoch{num_steps}"](state, padded, labels, e, k_epoch)
            else:
                order, shifts = c["epoch_randomness"](k_epoch)
                for i in range(num_steps):
                    state, metrics = c["step"](state, padded, labels, order, shifts, e, np.int32(i))
                state = c["end_epoch"](state)
            jax.block_until_ready(state)
            epoch_times.append(time.perf_counter() - t0)
            if epoch_eval:  # untimed; compiled on first use
                acc = self._compile_eval(0, state)(state, self.test_images, self.test_labels)
                epoch_accs.append(float(acc))
            if log is not None:
                loss = float(np.asarray(metrics["loss"]).reshape(-1)[-1])
                tacc = float(np.asarray(metrics["accuracy"]).reshape(-1)[-1])
                vacc = f" val_acc {epoch_accs[-1]:.4f}" if epoch_eval else ""
                log(
                    f"  jax epoch {epoch} loss {loss:.4f} train_acc {tacc:.4f}{vacc} "
                    f"time {epoch_times[-1]:.3f}s"
                )

        t0 = time.perf_counter()
        accuracy = float(c[f"eval_tta{r.tta_level}"](state, self.test_images, self.test_labels))
        eval_time = time.perf_counter() - t0
        self.last_state = state
        return {
            "accuracy": accuracy,
            "time_s": whiten_time + sum(epoch_times) + eval_time,
            "whiten_time_s": whiten_time,
            "epoch_times_s": epoch_times,
            "eval_time_s": eval_time,
            "train_loss": float(np.asarray(metrics["loss"]).reshape(-1)[-1]),
            "epoch_accuracies": epoch_accs,
            "steps": int(state.step),
        }
