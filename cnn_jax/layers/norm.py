"""Normalization layers (``flax.linen``), channels-last: every norm under one roof.

* ``BatchNorm`` (Ioffe & Szegedy 2015) for conv nets: statistics per channel over the
  batch and every spatial position, running averages in the ``batch_stats``
  collection, cross-device statistics under ``pmap``/``shard_map``/``vmap`` via
  ``axis_name`` (one axis name or a tuple of them) and, with no axis name, correct
  statistics under ``jit`` over a sharded batch.
* ``LocalResponseNorm`` / ``local_response_norm`` (Krizhevsky et al. 2012, AlexNet),
  with the paper's ``alpha`` or PyTorch's ``alpha / n``.
* ``GroupNorm``, ``LayerNorm`` and ``InstanceNorm``: flax's own, re-exported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from cnn_jax.layers._checks import check_channels_last, check_positive_int, is_real
from cnn_jax.ops import fast

__all__ = [
    "BatchNorm",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "LocalResponseNorm",
    "local_response_norm",
]

Array = Any
Dtype = Any
Initializer = Callable[..., Array]
AxisName = str | tuple[str, ...]

#: flax's group normalization (Wu & He 2018), re-exported: ``GroupNorm(num_groups=32)``.
GroupNorm = nn.GroupNorm
#: flax's layer normalization (Ba et al. 2016), re-exported.
LayerNorm = nn.LayerNorm
#: flax's instance normalization (Ulyanov et al. 2016), re-exported.
InstanceNorm = nn.InstanceNorm


def _stat_dtype(dtype: Dtype) -> Dtype:
    """The dtype statistics are computed in: at least float32 (float64 stays float64)."""
    return jnp.promote_types(dtype, jnp.float32)


def _axis_size(axis_name: AxisName, axis_index_groups: Any) -> int:
    """The number of devices statistics are averaged over, or a clear error if unbound."""
    try:
        size = lax.axis_size(axis_name)
    except NameError:
        raise ValueError(
            f"`axis_name` (={axis_name!r}) is not bound: in training mode, a BatchNorm with "
            "an `axis_name` must run under `jax.pmap`, `jax.shard_map` or `jax.vmap` with "
            "that axis name. On one device, or under `jax.jit` with a batch sharded "
            "over a mesh, use `axis_name=None` (XLA then inserts the cross-device sums)."
        ) from None
    if axis_index_groups is not None:
        size = len(axis_index_groups[0])
    return int(size)


class BatchNorm(nn.Module):
    """Batch normalization for channels-last inputs ``(N, *spatial, C)``.

    In training mode (``train=True``) every channel is normalized with the mean and the
    (biased) variance of that channel over the batch and all spatial positions,
    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``; in evaluation mode the
    running averages in the ``batch_stats`` collection (``mean``, ``var``; the same names
    as flax's ``nn.BatchNorm``) are used instead. Training mode updates them unless the
    module is initializing, so ``apply`` needs ``mutable=['batch_stats']``::

        model = BatchNorm()
        variables = model.init(key, x)
        y, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        y_eval = model.apply({**variables, **updates}, x)  # train=False

    Conventions:

    * **momentum** is flax's: ``running = momentum * running + (1 - momentum) * batch``.
      PyTorch's ``momentum`` is the weight of the *batch* statistic, so PyTorch's
      ``momentum=m`` is ``momentum=1 - m`` here; the default 0.9 is PyTorch's default
      0.1. (flax's own ``nn.BatchNorm`` defaults to 0.99.)
    * **running variance**: by default the unbiased estimate ``var * n / (n - 1)``
      enters the running average (``n`` the number of values per channel, over all
      devices), as in the paper's Algorithm 2, PyTorch, Caffe and cuDNN; the batch
      itself is always normalized with the biased variance. Set
      ``unbiased_running_var=False`` for flax's/Keras' convention.
    * **precision**: statistics and normalization are computed in float32 (float64 for
      float64 inputs) whatever the input dtype, e.g. bfloat16; running statistics are
      stored in float32. The variance is the mean of squared deviations from the mean
      (two passes), which does not cancel catastrophically as ``E[x²] - E[x]²`` can.
    * **devices**: under ``jit`` with the batch sharded over a mesh (``NamedSharding``)
      leave ``axis_name=None``: the means are over the global batch and XLA inserts the
      all-reduces. Under ``pmap``/``shard_map``, where every device sees its own shard,
      set ``axis_name`` to the mapped axis: the per-device mean is averaged across
      devices (``pmean``), then the per-device mean of squared deviations from that
      global mean, which is exact since every device holds the same number of values.
      With several mapped axes (nested ``pmap``/``vmap``, or a mesh of several axes
      under ``shard_map``) give the tuple of axis names, e.g. ``('hosts', 'devices')``:
      statistics are over every device of those axes, as ``lax.pmean`` over the
      tuple. Initialization never reduces across devices, so ``init`` works outside
      ``pmap``.

    Attributes:
      momentum: decay of the running averages, in ``[0, 1)`` (see above).
      epsilon: added to the variance, ``> 0``.
      use_scale: learn a per-channel scale (gamma, param ``scale``).
      use_bias: learn a per-channel bias (beta, param ``bias``).
      scale_init: initializer of ``scale`` (ones).
      bias_init: initializer of ``bias`` (zeros).
      dtype: dtype of the output; ``None`` infers it from the input and ``param_dtype``
        as flax does (a bfloat16 input with float32 params gives float32).
      param_dtype: dtype of ``scale`` and ``bias``.
      axis_name: the ``pmap``/``shard_map``/``vmap`` axis to average statistics over,
        or a tuple of such axes to average over all of them; ``None`` (default) for one
        device or sharded ``jit``.
      axis_index_groups: subsets of devices along ``axis_name`` normalized
        independently (see ``jax.lax.psum``), e.g. ``[[0, 1], [2, 3]]``.
      unbiased_running_var: whether the running variance accumulates the unbiased
        batch variance (default, PyTorch) or the biased one (flax).
      fast_variance: compute the batch variance in one pass over the data as
        ``E[x^2] - E[x]^2`` (clamped at 0, in float32 or wider), as flax does by
        default, instead of ``E[(x - E[x])^2]`` (two passes, more accurate when
        ``|mean| >> std``). One pass reads the activations once, which makes training
        faster on GPUs (docs/RESULTS.md).

    Derivative: in training mode without ``axis_name``, with the fast path
    ``'batch_norm'`` on (see ``cnn_jax.ops.use_fast_paths``), the normalization has a
    custom derivative: the same values, and a backward pass of four reductions over
    the batch instead of six.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    scale_init: Initializer = nn.initializers.ones
    bias_init: Initializer = nn.initializers.zeros
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    axis_name: AxisName | None = None
    axis_index_groups: Sequence[Sequence[int]] | None = None
    unbiased_running_var: bool = True
    fast_variance: bool = False

    def __post_init__(self) -> None:
        if not is_real(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` (={self.momentum!r}) must be in [0, 1)")
        if not is_real(self.epsilon) or not self.epsilon > 0:
            raise ValueError(f"`epsilon` (={self.epsilon!r}) must be > 0")
        if isinstance(self.axis_name, list | set):
            raise TypeError(
                f"`axis_name` (={self.axis_name!r}) must be an axis name or a tuple of axis names"
            )
        if self.axis_index_groups is not None and self.axis_name is None:
            raise ValueError(
                f"`axis_index_groups` (={self.axis_index_groups!r}) needs an `axis_name`"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Normalizes ``x`` with batch statistics (training) or running averages.

        Args:
          x: input of shape ``(N, *spatial, C)`` (rank >= 2, channels last).
          train: use (and update) the statistics of this batch; otherwise use the
            running averages.

        Returns:
          The normalized input, of the shape of ``x`` and dtype ``self.dtype`` (or the
          one inferred from ``x`` and ``param_dtype``).

        Raises:
          ValueError: if ``x`` has rank < 2, or if ``axis_name`` is set but not bound
            by an enclosing ``pmap``/``shard_map``/``vmap`` in training mode.
        """
        check_channels_last(x)
        x = jnp.asarray(x)
        channels = x.shape[-1]
        reduce_axes = tuple(range(x.ndim - 1))
        compute = _stat_dtype(x.dtype)
        if self.dtype is not None:
            out_dtype = self.dtype
        elif self.use_scale or self.use_bias:
            out_dtype = jnp.promote_types(x.dtype, self.param_dtype)
        else:
            out_dtype = x.dtype
        if not jnp.issubdtype(out_dtype, jnp.inexact):
            out_dtype = jnp.float32

        ra_mean = self.variable(
            "batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (channels,)
        )
        ra_var = self.variable(
            "batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (channels,)
        )
        xs = x.astype(compute)
        scale = bias = None
        if self.use_scale:
            scale = self.param("scale", self.scale_init, (channels,), self.param_dtype)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (channels,), self.param_dtype)
        if train and self.axis_name is None and fast.fast_path_enabled("batch_norm"):
            # The same values through a custom derivative (`cnn_jax.ops.fast`).
            y, mean, var = fast.batch_norm_train(
                xs,
                None if scale is None else scale.astype(compute),
                None if bias is None else bias.astype(compute),
                self.epsilon,
                self.fast_variance,
            )
            if not self.is_initializing():
                self._update_running(ra_mean, ra_var, mean, var, math.prod(x.shape[:-1]))
            return y.astype(out_dtype)
        if train:
            count = math.prod(x.shape[:-1])
            # No cross-device reduction at init: `init` usually runs outside pmap.
            cross = self.axis_name is not None and not self.is_initializing()
            if cross:
                count *= _axis_size(self.axis_name, self.axis_index_groups)
            mean = jnp.mean(xs, axis=reduce_axes)
            if cross:
                mean = lax.pmean(mean, self.axis_name, axis_index_groups=self.axis_index_groups)
            if self.fast_variance:
                mean_sq = jnp.mean(jnp.square(xs), axis=reduce_axes)
                if cross:
                    mean_sq = lax.pmean(
                        mean_sq, self.axis_name, axis_index_groups=self.axis_index_groups
                    )
                var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
            else:
                var = jnp.mean(jnp.square(xs - mean), axis=reduce_axes)
                if cross:
                    var = lax.pmean(var, self.axis_name, axis_index_groups=self.axis_index_groups)
            if not self.is_initializing():
                self._update_running(ra_mean, ra_var, mean, var, count)
        else:
            mean = ra_mean.value.astype(compute)
            var = ra_var.value.astype(compute)

        mul = lax.rsqrt(var + jnp.asarray(self.epsilon, compute))
        if scale is not None:
            mul = mul * scale.astype(compute)
        y = (xs - mean) * mul
        if bias is not None:
            y = y + bias.astype(compute)
        return y.astype(out_dtype)

    def _update_running(
        self, ra_mean: Any, ra_var: Any, mean: Array, var: Array, count: int
    ) -> None:
        """Moves the running averages towards this batch's statistics."""
        correction = count / max(count - 1, 1) if self.unbiased_running_var else 1.0
        m = self.momentum
        ra_mean.value = (m * ra_mean.value + (1 - m) * mean).astype(jnp.float32)
        ra_var.value = (m * ra_var.value + (1 - m) * correction * var).astype(jnp.float32)


def _check_lrn_args(size: Any, alpha: Any, beta: Any, k: Any) -> None:
    check_positive_int(size, "size")
    if not is_real(alpha) or not alpha >= 0:
        raise ValueError(f"`alpha` (={alpha!r}) must be >= 0")
    if not is_real(beta) or not beta >= 0:
        raise ValueError(f"`beta` (={beta!r}) must be >= 0")
    if not is_real(k) or not k > 0:
        raise ValueError(f"`k` (={k!r}) must be > 0")


def local_response_norm(
    x: Array,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    *,
    alpha_over_n: bool = False,
) -> Array:
    """Local response normalization across channels (AlexNet, Krizhevsky et al. 2012).

    ``b_c = a_c / (k + alpha' * sum_{c'} a_{c'}^2) ** beta``, the sum over the ``size``
    channels ``c - size // 2 .. c + (size - 1) // 2`` of the last axis, with channels
    beyond the edges counted as zeros (as PyTorch; for odd ``size`` this is the paper's
    ``max(0, c - n/2) .. min(C - 1, c + n/2)``). ``alpha' = alpha`` as in the paper
    (whose defaults, ``k=2, n=5, alpha=1e-4, beta=0.75``, are these), or
    ``alpha' = alpha / size`` with ``alpha_over_n=True``, as PyTorch's
    ``nn.LocalResponseNorm`` and Caffe (whose ``k`` defaults to 1).

    Computed in float32 (float64 for float64 inputs), returned in the input's dtype.

    Args:
      x: input ``(N, ..., C)``, channels last, rank >= 2.
      size: the number of channels ``n`` in the window, positive.
      alpha: the scale of the sum of squares, ``>= 0``.
      beta: the exponent, ``>= 0``.
      k: the additive constant, ``> 0`` (so the denominator is never 0).
      alpha_over_n: divide ``alpha`` by ``size`` (PyTorch/Caffe) instead of using it
        as is (paper).

    Returns:
      The normalized input, of the shape and dtype of ``x``.

    Raises:
      TypeError: if ``size`` is not an int or ``x`` not an array.
      ValueError: for out-of-range arguments or an input of rank < 2.
    """
    check_channels_last(x)
    _check_lrn_args(size, alpha, beta, k)
    x = jnp.asarray(x)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.float32
    xs = x.astype(_stat_dtype(dtype))
    channels = x.shape[-1]
    # Sum of `size` shifted copies of the zero-padded squares: differentiable to any
    # order (unlike lax.reduce_window under jit), and cheap for the usual small `size`.
    sq = jnp.pad(jnp.square(xs), ((0, 0),) * (x.ndim - 1) + ((size // 2, (size - 1) // 2),))
    sums = sum(sq[..., i : i + channels] for i in range(size))
    a = alpha / size if alpha_over_n else alpha
    return (xs / (k + a * sums) ** beta).astype(dtype)


class LocalResponseNorm(nn.Module):
    """Local response normalization across channels, as a (parameter-free) module.

    See ``local_response_norm``. The defaults are AlexNet's (``k=2, size=5,
    alpha=1e-4, beta=0.75``, ``alpha`` used as is); ``LocalResponseNorm.pytorch(...)``
    builds the equivalent of ``torch.nn.LocalResponseNorm(...)`` (``alpha / size``,
    ``k=1``).

    Attributes:
      size: channels in the window (the paper's ``n``).
      alpha: scale of the sum of squares.
      beta: exponent.
      k: additive constant.
      alpha_over_n: use ``alpha / size`` (PyTorch/Caffe) rather than ``alpha`` (paper).
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0
    alpha_over_n: bool = False

    def __post_init__(self) -> None:
        _check_lrn_args(self.size, self.alpha, self.beta, self.k)
        super().__post_init__()

    @classmethod
    def pytorch(
        cls, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, **kwargs: Any
    ) -> LocalResponseNorm:
        """The module equal to ``torch.nn.LocalResponseNorm(size, alpha, beta, k)``.

        Args:
          size: channels in the window.
          alpha: PyTorch's ``alpha`` (divided by ``size`` in the formula).
          beta: exponent.
          k: additive constant (PyTorch's default 1).
          **kwargs: passed to the constructor (e.g. ``name``, ``parent``).

        Returns:
          A ``LocalResponseNorm`` with ``alpha_over_n=True``.
        """
        return cls(size=size, alpha=alpha, beta=beta, k=k, alpha_over_n=True, **kwargs)

    def __call__(self, x: Array) -> Array:
        """Applies ``local_response_norm`` with this module's arguments.

        Args:
          x: input ``(N, ..., C)``, channels last.

        Returns:
          The normalized input, of the shape and dtype of ``x``.
        """
        return local_response_norm(
            x, self.size, self.alpha, self.beta, self.k, alpha_over_n=self.alpha_over_n
        )
