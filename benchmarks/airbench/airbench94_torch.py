"""airbench94 in PyTorch: the reference, a re-implementation of Keller Jordan's script.

Jordan (2024), "94% on CIFAR-10 in 3.29 seconds on a single GPU" (arXiv:2404.00498);
``airbench94.py`` of github.com/KellerJordan/cifar10-airbench (3.83 s on an A100,
94.01% mean over 1,000 runs). What it does, and so what this file does:

* **Network** (2.0 M parameters): a 2x2 convolution with 24 filters and a bias, frozen
  at the patch-whitening initialization below, then GELU; three groups of
  ``conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU`` of widths 64, 256,
  256; ``maxpool3``; a linear layer to 10 classes without bias; the logits times 1/9.
  3x3 convolutions have no bias and start from PyTorch's default init with their first
  ``C_in`` filters replaced by the identity (``dirac_``). BatchNorm: ``eps = 1e-12``,
  PyTorch momentum 0.4 (running = 0.6 running + 0.4 batch), weight frozen at 1, bias
  trained. The network runs in float16 (channels-last) with float32 BatchNorms.
* **Whitening init**: the 2x2 patches of the first 5,000 normalized training images give
  the (uncentered) patch covariance; its eigenvectors divided by ``sqrt(eigenvalue +
  5e-4)``, in decreasing order, and their negations are the 24 filters.
* **Optimizer**: Nesterov SGD, momentum 0.85, batch 1024, loss = the *sum* of the
  label-smoothed (0.2) cross-entropies; ``lr = 11.5 / (1024 (1 + 1 / 0.15))``, BatchNorm
  biases at 64 times that rate, weight decay ``0.0153 * 1024 / (1024 (1 + 1 / 0.15))``
  per step for every group (``weight_decay = wd / lr_group``); the learning rate is
  scaled by a triangle 0.2 -> 1 (at 23% of the steps) -> 0.07. The whitening bias is
  trained for the first 3 epochs only. 9.9 epochs: ``ceil(48 * 9.9) = 476`` steps.
* **Lookahead**: from epoch 3, every 5 steps the weights and BatchNorm statistics ``p``
  update an EMA ``e <- rho e + (1 - rho) p`` and are replaced by it, with
  ``rho = 0.95**5 * (step / 476)**3`` (the first such step only copies); at the end of
  each epoch the weights are reset to the EMA.
* **Data**: normalized; flipped at random once, then all images flipped together every
  odd epoch (alternating flip); reflect-padded by 2 and cropped back at a random offset
  per image and epoch; reshuffled every epoch; incomplete batches dropped.
* **Evaluation**: test-time augmentation over 6 views: the image and its mirror, and
  both one-pixel translations (up-left, down-right, of the reflect-padded image) of each;
  the logits are averaged with weights 1/4 (plain), 1/8 (each translation), mirrored
  alike.
* **Timing**: the whitening init, every epoch's training (the data preparation of epoch
  0 included) and the TTA evaluation, each closed by a device synchronization; moving
  the uint8 data to the device and building the network are not timed.

Differences from the script, none of which changes the recipe: the data come in as
numpy arrays (:mod:`benchmarks.airbench.data`), a run takes a seed, the per-epoch
evaluation is optional (``epoch_eval``), time is wall-clock between synchronizations
(the script uses CUDA events), and the device, dtype and ``torch.compile`` are options
(on CPU use ``dtype=torch.float32``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from benchmarks.airbench import CIFAR_MEAN, CIFAR_STD, Recipe

__all__ = [
    "AirbenchNet",
    "BatchNorm",
    "Conv",
    "ConvGroup",
    "Lookahead",
    "TorchAirbench",
    "make_net",
    "make_optimizer",
    "tta_logits",
    "whitening_filters",
]


# ----------------------------------------------------------------------------- network


class Conv(nn.Conv2d):
    """Bias-free conv (by default) whose first ``C_in`` filters start as the identity."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int = 3, padding: Any = "same", bias=False
    ) -> None:
        super().__init__(c_in, c_out, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        """PyTorch's default init, zero bias, identity in the first ``C_in`` filters."""
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with the recipe's momentum and epsilon, weight frozen at 1."""

    def __init__(self, num_features: int, momentum: float, eps: float) -> None:
        # `momentum` is in flax's convention; PyTorch's is the weight of the batch.
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = False


class ConvGroup(nn.Module):
    """``conv -> maxpool2 -> BN -> GELU -> conv -> BN -> GELU``."""

    def __init__(self, c_in: int, c_out: int, recipe: Recipe) -> None:
        super().__init__()
        m, eps = recipe.batchnorm_momentum, recipe.batchnorm_eps
        self.conv1 = Conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(c_out, m, eps)
        self.conv2 = Conv(c_out, c_out)
        self.norm2 = BatchNorm(c_out, m, eps)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the group (NCHW)."""
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """The airbench94 network (NCHW): whitening conv, 3 conv groups, pool, linear.

    Module names (``whiten``, ``group1..3`` with ``conv1/norm1/conv2/norm2``, ``head``)
    match the flax model of :mod:`benchmarks.airbench.airbench94_jax`.
    """

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        w1, w2, w3 = recipe.widths
        k = recipe.whiten_kernel_size
        self.whiten = Conv(3, recipe.whiten_width, kernel_size=k, padding=0, bias=True)
        self.group1 = ConvGroup(recipe.whiten_width, w1, recipe)
        self.group2 = ConvGroup(w1, w2, recipe)
        self.group3 = ConvGroup(w2, w3, recipe)
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(w3, 10, bias=False)
        self.scaling_factor = recipe.scaling_factor
        self.activ = nn.GELU()
        self.whiten.weight.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the logits of NCHW normalized images."""
        x = self.activ(self.whiten(x))
        x = self.group3(self.group2(self.group1(x)))
        x = self.pool(x).flatten(1)
        return self.head(x) * self.scaling_factor


def make_net(recipe: Recipe, device: Any, dtype: torch.dtype) -> AirbenchNet:
    """The network in ``dtype`` (BatchNorms in float32), channels-last, on ``device``."""
    net = AirbenchNet(recipe).to(device=device, dtype=dtype)
    net = net.to(memory_format=torch.channels_last)
    for mod in net.modules():
        if isinstance(mod, BatchNorm):
            mod.float()
    return net


def reinit_net(net: nn.Module) -> None:
    """Re-initializes every layer in place (the compiled variant reuses one network)."""
    for mod in net.modules():
        if isinstance(mod, Conv | BatchNorm | nn.Linear):
            mod.reset_parameters()


# --------------------------------------------------------------------- whitening init


def whitening_filters(images: torch.Tensor, kernel_size: int, eps: float) -> torch.Tensor:
    """Patch-whitening filters ``(2 * C k k, C, k, k)`` from normalized NCHW images.

    The filters are the eigenvectors of the uncentered covariance of all ``k x k``
    patches (stride 1), in decreasing order of eigenvalue, each divided by
    ``sqrt(eigenvalue + eps)``, followed by their negations (Page 2018; hlb-CIFAR10).
    """
    c = images.shape[1]
    patches = images.unfold(2, kernel_size, 1).unfold(3, kernel_size, 1)  # N C H' W' k k
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kernel_size**2).float()
    cov = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov, UPLO="U")
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)[:, None]
    scaled = scaled.reshape(-1, c, kernel_size, kernel_size)
    return torch.cat((scaled, -scaled))


# ------------------------------------------------------------------------- optimizer


def make_optimizer(
    net: nn.Module, recipe: Recipe, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Nesterov SGD with the two parameter groups and the triangular schedule.

    BatchNorm biases (names containing ``norm``) get ``lr_bias``; the other trainable
    parameters (the 3x3 and linear weights and the whitening bias) ``lr``; both decay by
    the same ``wd`` per step. Frozen tensors (whitening weight, BatchNorm weights) are
    left out, as in the script.
    """
    hp = recipe.sgd_hyperparameters()
    named = [(k, p) for k, p in net.named_parameters() if p.requires_grad]
    norm_biases = [p for k, p in named if "norm" in k]
    others = [p for k, p in named if "norm" not in k]
    groups = [
        {"params": norm_biases, "lr": hp["lr_bias"], "weight_decay": hp["wd_over_lr_bias"]},
        {"params": others, "lr": hp["lr"], "weight_decay": hp["wd_over_lr"]},
    ]
    optimizer = torch.optim.SGD(groups, momentum=recipe.momentum, nesterov=True)
    factors = recipe.lr_factors(total_steps).tolist()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: factors[i])
    return optimizer, scheduler


class Lookahead:
    """EMA of the floating-point state (weights and BN statistics), copied back."""

    def __init__(self, net: nn.Module) -> None:
        self.ema = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: nn.Module, decay: float) -> None:
        """``e <- decay e + (1 - decay) p``, then ``p <- e``, for every float tensor."""
        for e, p in zip(self.ema.values(), net.state_dict().values(), strict=True):
            if p.dtype in (torch.half, torch.bfloat16, torch.float):
                e.lerp_(p, 1 - decay)
                p.copy_(e)


# ------------------------------------------------------------------------------ data


def _flip_lr(x: torch.Tensor) -> torch.Tensor:
    """Mirrors each image with probability 1/2."""
    mask = (torch.rand(len(x), device=x.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def _random_crop(padded: torch.Tensor, size: int) -> torch.Tensor:
    """A random ``size x size`` crop of each padded image (independent offsets)."""
    r = (padded.size(-1) - size) // 2
    shifts = torch.randint(-r, r + 1, size=(len(padded), 2), device=padded.device)
    out = torch.empty(
        (len(padded), padded.size(1), size, size), device=padded.device, dtype=padded.dtype
    )
    if r <= 2:  # one masked copy per offset pair
        for sy in range(-r, r + 1):
            for sx in range(-r, r + 1):
                mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
                out[mask] = padded[mask, :, r + sy : r + sy + size, r + sx : r + sx + size]
    else:  # rows, then columns: 2 (2r + 1) copies instead of (2r + 1)^2
        tmp = torch.empty(
            (len(padded), padded.size(1), size, padded.size(-1)),
            device=padded.device,
            dtype=padded.dtype,
        )
        for s in range(-r, r + 1):
            mask = shifts[:, 0] == s
            tmp[mask] = padded[mask, :, r + s : r + s + size, :]
        for s in range(-r, r + 1):
            mask = shifts[:, 1] == s
            out[mask] = tmp[mask, :, :, r + s : r + s + size]
    return out


def tta_logits(net: nn.Module, images: torch.Tensor, level: int) -> torch.Tensor:
    """Logits averaged over the test-time augmentations of ``level`` (0, 1 or 2)."""

    def mirror(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * net(x) + 0.5 * net(x.flip(-1))

    if level == 0:
        return net(images).clone()
    if level == 1:
        return mirror(images)
    padded = F.pad(images, (1,) * 4, "reflect")
    h, w = images.shape[-2:]
    shifted = [padded[:, :, 0:h, 0:w], padded[:, :, 2 : h + 2, 2 : w + 2]]
    translated = torch.stack([mirror(x) for x in shifted]).mean(0)
    return 0.5 * mirror(images) + 0.5 * translated


# --------------------------------------------------------------------------- training


class TorchAirbench:
    """One process's PyTorch airbench94: data on the device, runs by seed.

    Args:
      train: ``(images uint8 (N, 32, 32, 3), labels int)``.
      test: the same for the test set.
      recipe: the hyperparameters.
      device: e.g. ``'cuda'`` or ``'cpu'``.
      dtype: the network's dtype (BatchNorms stay float32); float16 as the script on
        GPU, float32 on CPU.
      compile: wrap the network in ``torch.compile`` (``compile_mode``), as
        ``airbench94_compiled.py``; one network is then re-initialized for every run.
      compile_mode: ``torch.compile``'s mode.
    """

    def __init__(
        self,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        recipe: Recipe | None = None,
        device: str = "cuda",
        dtype: torch.dtype = torch.float16,
        compile: bool = False,
        compile_mode: str = "max-autotune",
    ) -> None:
        self.recipe = recipe or Recipe()
        self.device = torch.device(device)
        self.dtype = dtype
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.train_images = self._to_device(train[0])
        self.train_labels = torch.as_tensor(np.asarray(train[1]), device=self.device).long()
        self.test_images = self._to_device(test[0])
        self.test_labels = torch.as_tensor(np.asarray(test[1]), device=self.device).long()
        self.num_train = len(self.train_images)
        self.total_steps = self.recipe.total_steps(self.num_train)
        self.mean = torch.tensor(CIFAR_MEAN, device=self.device, dtype=dtype).view(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR_STD, device=self.device, dtype=dtype).view(1, 3, 1, 1)
        self.loss_fn = nn.CrossEntropyLoss(
            label_smoothing=self.recipe.label_smoothing, reduction="none"
        )
        self.compiled_net = None
        if compile:
            self.compiled_net = torch.compile(
                make_net(self.recipe, self.device, dtype), mode=compile_mode
            )

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC -> ``dtype`` in [0, 1], NCHW channels-last (not timed, as the script)."""
        x = torch.as_tensor(np.asarray(images), device=self.device)
        x = (x.to(self.dtype) / 255).permute(0, 3, 1, 2)
        return x.contiguous(memory_format=torch.channels_last)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel."""
        return (x - self.mean) / self.std

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def new_net(self) -> nn.Module:
        """A freshly initialized network (the compiled one, re-initialized, if compiling)."""
        if self.compiled_net is not None:
            reinit_net(self.compiled_net._orig_mod)
            return self.compiled_net
        return make_net(self.recipe, self.device, self.dtype)

    @staticmethod
    def _module(net: nn.Module) -> AirbenchNet:
        return getattr(net, "_orig_mod", net)

    def train_step(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        inputs: torch.Tensor,
        labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on a batch; returns the outputs and the summed loss."""
        outputs = net(inputs)
        loss = self.loss_fn(outputs, labels).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return outputs, loss

    def lookahead_step(
        self, module: nn.Module, lookahead: Lookahead | None, epoch: int, step: int
    ) -> Lookahead | None:
        """After step ``step`` (1-based) of epoch ``epoch``: the lookahead update when due.

        From epoch ``ema_start_epochs``, every ``ema_every_n_steps`` steps: the first time
        the EMA starts as a copy, later ``e <- rho e + (1 - rho) p; p <- e``.
        """
        r = self.recipe
        if epoch >= r.ema_start_epochs and step % r.ema_every_n_steps == 0:
            if lookahead is None:
                return Lookahead(module)
            lookahead.update(module, r.ema_decay(step, self.total_steps))
        return lookahead

    @torch.no_grad()
    def evaluate(self, net: nn.Module, tta_level: int) -> float:
        """Test accuracy with test-time augmentation ``tta_level``."""
        net.eval()
        images = self.normalize(self.test_images)
        bs = self.recipe.eval_batch_size
        logits = torch.cat([tta_logits(net, x, tta_level) for x in images.split(bs)])
        return (logits.argmax(1) == self.test_labels).float().mean().item()

    def run(
        self,
        seed: int,
        *,
        dummy_labels: bool = False,
        epoch_eval: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """One training run.

        Args:
          seed: ``torch.manual_seed`` of the run (init, flips, crops, order).
          dummy_labels: train on random labels (the warm-up run of the script).
          epoch_eval: evaluate (untimed, without TTA) after every epoch.
          log: called with a line per epoch when given.

        Returns:
          ``accuracy`` (with TTA), ``time_s`` (the timed parts), ``epoch_times_s``,
          ``whiten_time_s``, ``eval_time_s``, ``train_loss`` (last batch, per example)
          and ``epoch_accuracies`` (if ``epoch_eval``).
        """
        r = self.recipe
        torch.manual_seed(seed)
        labels_all = self.train_labels
        if dummy_labels:
            labels_all = torch.randint(0, 10, labels_all.shape, device=self.device)
        net = self.new_net()
        module = self._module(net)
        optimizer, scheduler = make_optimizer(module, r, self.total_steps)
        bs, steps_per_epoch = r.batch_size, r.steps_per_epoch(self.num_train)

        self._sync()
        t0 = time.perf_counter()
        sample = self.normalize(self.train_images[: r.whiten_samples])
        filters = whitening_filters(sample, r.whiten_kernel_size, r.whiten_eps)
        module.whiten.weight.data.copy_(filters)
        self._sync()
        whiten_time = time.perf_counter() - t0

        epoch_times, epoch_accs = [], []
        lookahead: Lookahead | None = None
        step = 0
        padded = flipped = None
        outputs = loss = labels = None
        for epoch in range(math.ceil(r.train_epochs)):
            module.whiten.bias.requires_grad = epoch < r.whiten_bias_epochs
            self._sync()
            t0 = time.perf_counter()
            if epoch == 0:
                flipped = self.normalize(self.train_images)
                if r.flip:
                    flipped = _flip_lr(flipped)
                if r.translate > 0:
                    padded = F.pad(flipped, (r.translate,) * 4, "reflect")
            images = _random_crop(padded, flipped.shape[-1]) if r.translate > 0 else flipped
            if r.flip and epoch % 2 == 1:
                images = images.flip(-1)
            order = torch.randperm(len(images), device=self.device)
            net.train()
            for i in range(steps_per_epoch):
                idx = order[i * bs : (i + 1) * bs]
                labels = labels_all[idx]
                outputs, loss = self.train_step(net, optimizer, scheduler, images[idx], labels)
                step += 1
                lookahead = self.lookahead_step(module, lookahead, epoch, step)
                if step >= self.total_steps:
                    break
            if lookahead is not None:
                lookahead.update(module, decay=1.0)
            self._sync()
            epoch_times.append(time.perf_counter() - t0)
            if epoch_eval:
                epoch_accs.append(self.evaluate(net, 0))
            if log is not None:
                acc = f" val_acc {epoch_accs[-1]:.4f}" if epoch_eval else ""
                log(
                    f"  torch epoch {epoch} loss {loss.item() / len(labels):.4f} "
                    f"train_acc {(outputs.argmax(1) == labels).float().mean().item():.4f}"
                    f"{acc} time {epoch_times[-1]:.3f}s"
                )

        self._sync()
        t0 = time.perf_counter()
        accuracy = self.evaluate(net, r.tta_level)
        self._sync()
        eval_time = time.perf_counter() - t0
        return {
            "accuracy": accuracy,
            "time_s": whiten_time + sum(epoch_times) + eval_time,
            "whiten_time_s": whiten_time,
            "epoch_times_s": epoch_times,
            "eval_time_s": eval_time,
            "train_loss": loss.item() / len(labels),
            "epoch_accuracies": epoch_accs,
            "steps": step,
        }
