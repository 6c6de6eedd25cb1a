"""airbench94 CIFAR-10 speed run in JAX and in PyTorch, side by side.

The recipe is Keller Jordan's ``airbench94.py`` (Jordan, "94% on CIFAR-10 in 3.29 seconds
on a single GPU", arXiv:2404.00498, 2024; github.com/KellerJordan/cifar10-airbench),
itself descended from tysam-code's hlb-CIFAR10 and from Page (2018), "How to train your
ResNet": an 8-layer convnet whose first layer is a frozen patch-whitening convolution,
identity (Dirac) initialization, BatchNorm without learnable scale, GELU, label
smoothing, Nesterov SGD with a triangular learning rate and a higher rate for the
BatchNorm biases, a lookahead-style EMA of the weights, alternating flips, random 2-pixel
translations and flip + translate test-time augmentation.

* :mod:`benchmarks.airbench.airbench94_torch`: the PyTorch reference, a re-implementation
  of ``airbench94.py`` (eager, optionally ``torch.compile``).
* :mod:`benchmarks.airbench.airbench94_jax`: the same recipe in JAX/flax/optax over
  ``cnn_jax.layers``, the whole run on the device.
* :mod:`benchmarks.airbench.data`: CIFAR-10 from the offline JPEG copy.
* :mod:`benchmarks.airbench.run`: ``python -m benchmarks.airbench.run`` runs both, seed by
  seed interleaved, and reports accuracies, times and the JAX/PyTorch time ratio.

This module holds what both implementations share: the hyperparameters
(:class:`Recipe`), the step counts and the learning-rate table. It imports numpy only.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "Recipe"]

#: Per-channel mean and standard deviation of CIFAR-10's training images (in [0, 1]),
#: the constants ``airbench94.py`` normalizes with.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The hyperparameters of ``airbench94.py`` (its ``hyp`` dict), with its defaults.

    Learning rate, momentum and weight decay are in the script's decoupled form: ``lr``
    and ``weight_decay`` are per 1024 examples, and the PyTorch SGD values follow from
    them (:meth:`sgd_hyperparameters`).

    Attributes:
      train_epochs: epochs of training (fractional: the last one is cut short).
      batch_size: training batch size (incomplete batches are dropped).
      lr: learning rate per 1024 examples.
      momentum: Nesterov momentum.
      weight_decay: weight decay per 1024 examples, decoupled from the learning rate.
      bias_scaler: learning-rate multiplier (not weight decay) of the BatchNorm biases.
      label_smoothing: label smoothing of the cross-entropy.
      lr_start: learning-rate factor at step 0 (triangular schedule).
      lr_peak_frac: where the factor peaks at 1, as a fraction of the steps.
      lr_end: factor at the last step.
      ema_start_epochs: the epoch from which the lookahead EMA runs.
      ema_decay_base: per-step decay of the EMA (raised to ``ema_every_n_steps``).
      ema_decay_pow: the decay is warmed up as ``(step / total_steps) ** ema_decay_pow``.
      ema_every_n_steps: the EMA is updated (and copied back) every this many steps.
      whiten_bias_epochs: epochs during which the whitening layer's bias is trained.
      flip: alternating horizontal flips (random at epoch 0, inverted every odd epoch).
      translate: random translation, in pixels, by reflect-padding and cropping.
      whiten_kernel_size: patch size of the whitening convolution.
      whiten_eps: added to the eigenvalues before the whitening scale.
      whiten_samples: training images the patch covariance is estimated on.
      batchnorm_momentum: running-average momentum in flax's convention
        (``running = m * running + (1 - m) * batch``; PyTorch's ``momentum = 1 - m``).
      batchnorm_eps: BatchNorm epsilon.
      widths: output channels of the three conv groups.
      scaling_factor: multiplies the logits.
      tta_level: 0 none, 1 mirror, 2 mirror and translate (6 views).
      eval_batch_size: test-set batch size.
    """

    train_epochs: float = 9.9
    batch_size: int = 1024
    lr: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    lr_start: float = 0.2
    lr_peak_frac: float = 0.23
    lr_end: float = 0.07
    ema_start_epochs: int = 3
    ema_decay_base: float = 0.95
    ema_decay_pow: float = 3.0
    ema_every_n_steps: int = 5
    whiten_bias_epochs: int = 3
    flip: bool = True
    translate: int = 2
    whiten_kernel_size: int = 2
    whiten_eps: float = 5e-4
    whiten_samples: int = 5000
    batchnorm_momentum: float = 0.6
    batchnorm_eps: float = 1e-12
    widths: tuple[int, int, int] = (64, 256, 256)
    scaling_factor: float = 1 / 9
    tta_level: int = 2
    eval_batch_size: int = 2000

    def __post_init__(self) -> None:
        if not self.train_epochs > 0:
            raise ValueError(f"`train_epochs` (={self.train_epochs!r}) must be > 0")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"`batch_size` (={self.batch_size!r}) must be a positive int")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` (={self.momentum!r}) must be in [0, 1)")
        if not 0 < self.lr_peak_frac < 1:
            raise ValueError(f"`lr_peak_frac` (={self.lr_peak_frac!r}) must be in (0, 1)")
        if self.tta_level not in (0, 1, 2):
            raise ValueError(f"`tta_level` (={self.tta_level!r}) must be 0, 1 or 2")
        if len(self.widths) != 3 or any(w < 1 for w in self.widths):
            raise ValueError(f"`widths` (={self.widths!r}) must be three positive ints")
        if not isinstance(self.translate, int) or self.translate < 0:
            raise ValueError(f"`translate` (={self.translate!r}) must be an int >= 0")
        if not isinstance(self.ema_every_n_steps, int) or self.ema_every_n_steps < 1:
            raise ValueError(
                f"`ema_every_n_steps` (={self.ema_every_n_steps!r}) must be a positive int"
            )

    @property
    def whiten_width(self) -> int:
        """Filters of the whitening layer: the patch eigenvectors and their negations."""
        return 2 * 3 * self.whiten_kernel_size**2

    def steps_per_epoch(self, num_train: int) -> int:
        """Full batches in one epoch of ``num_train`` images.

        Raises:
          ValueError: if there is not a single full batch.
        """
        steps = num_train // self.batch_size
        if steps < 1:
            raise ValueError(
                f"`num_train` (={num_train}) must hold at least one batch of "
                f"{self.batch_size} images"
            )
        return steps

    def total_steps(self, num_train: int) -> int:
        """``ceil(steps_per_epoch * train_epochs)``, as ``airbench94.py``."""
        return math.ceil(self.steps_per_epoch(num_train) * self.train_epochs)

    def epoch_steps(self, num_train: int) -> list[int]:
        """The steps of every epoch: full epochs, then what is left in the last one."""
        per_epoch, total = self.steps_per_epoch(num_train), self.total_steps(num_train)
        return [min(per_epoch, total - e * per_epoch) for e in range(math.ceil(self.train_epochs))]

    def lr_factors(self, total_steps: int) -> np.ndarray:
        """The triangular schedule: the learning-rate factor at steps ``0..total_steps``.

        Linear from ``lr_start`` at step 0 to 1 at step ``int(lr_peak_frac * total)``, then
        linear to ``lr_end`` at step ``total`` (``airbench94.py``'s ``triangle``). Step
        ``i`` of training uses entry ``i``.

        Args:
          total_steps: the number of training steps (>= 1).

        Returns:
          float64 array of length ``total_steps + 1``.
        """
        if total_steps < 1:
            raise ValueError(f"`total_steps` (={total_steps!r}) must be >= 1")
        x = np.arange(total_steps + 1, dtype=np.float64)
        peak = int(self.lr_peak_frac * total_steps)
        down = 1.0 + (self.lr_end - 1.0) * (x - peak) / (total_steps - peak)
        if peak == 0:
            return down
        up = self.lr_start + (1.0 - self.lr_start) * x / peak
        return np.where(x < peak, up, down)

    def sgd_hyperparameters(self) -> dict[str, float]:
        """PyTorch-SGD values from the decoupled ones, as ``airbench94.py`` computes them.

        With Nesterov momentum and constant gradients a step is ``1 + 1 / (1 - momentum)``
        times the gradient, so the rate is divided by ``1024 * (1 + 1 / (1 - momentum))``.
        Weight decay enters SGD as ``weight_decay * lr_group`` per step, so each group's
        coefficient is ``wd / lr_group``: the decay is the same for every group.

        Returns:
          ``lr`` (the other parameters), ``lr_bias`` (BatchNorm biases), ``wd`` (the
          decoupled decay per step), ``wd_over_lr`` and ``wd_over_lr_bias`` (the SGD
          ``weight_decay`` of the two groups).
        """
        kilostep_scale = 1024 * (1 + 1 / (1 - self.momentum))
        lr = self.lr / kilostep_scale
        wd = self.weight_decay * self.batch_size / kilostep_scale
        lr_bias = lr * self.bias_scaler
        return {
            "lr": lr,
            "lr_bias": lr_bias,
            "wd": wd,
            "wd_over_lr": wd / lr,
            "wd_over_lr_bias": wd / lr_bias,
        }

    def ema_decay(self, step: int, total_steps: int) -> float:
        """The lookahead decay at (1-based) ``step``: ``base**every * (step / total)**pow``."""
        base = self.ema_decay_base**self.ema_every_n_steps
        return base * (step / total_steps) ** self.ema_decay_pow
