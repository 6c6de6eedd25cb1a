"""Shared pieces of the ``study_*.py`` configs: the small CIFAR-10 net and the runlocal shrink.

Not a study itself (it has no ``get_study``).
"""

from __future__ import annotations

from ml_collections import ConfigDict

from experiments.configs.common import base_config, runlocal


def small_cifar10(epochs: int = 2) -> ConfigDict:
    """A small, fast CNN on the CIFAR-10 JPEG copy: the base of the CPU-budget studies.

    Model: ``cnn_mnist`` (``CNNMnist``) with widths (16, 32) and a 128-unit hidden layer
    (two blocks of two 3x3 conv + BatchNorm + ReLU, 2x2 max pooling; 0.29 M parameters
    on 32x32x3). Data: CIFAR-10 (the local copy is JPEG re-encoded), standardized,
    random 32x32 crops of the image padded by 4 (reflect) and horizontal flips.
    Training: AdamW (peak 2e-3, weight decay 0.05), one-cycle-style cosine schedule
    (warm-up 0.25 epoch), batch 64, ``epochs`` epochs, label smoothing 0.1.
    """
    c = base_config()
    c.model = "cnn_mnist"
    c.model_kwargs.widths = (16, 32)
    c.model_kwargs.hidden = 128
    c.model_kwargs.dropout = 0.3
    c.dataset = "cifar10"
    c.normalization = "standardize"
    c.augment = (("random_crop", {"padding": 4, "padding_mode": "reflect"}), "horizontal_flip")
    c.batch_size = 64
    c.eval_batch_size = 1000
    c.num_epochs = epochs
    c.optim.name = "adamw"
    c.optim.learning_rate = 2e-3
    c.optim.weight_decay = 0.05
    c.optim.schedule = "cosine"
    c.optim.warmup_epochs = 0.25
    c.label_smoothing = 0.1
    c.log_every_steps = 100
    c.eval_every_steps = 50_000 // 64 // 2  # twice an epoch
    c.progress_bar = False
    return c


def shrink(c: ConfigDict, steps: int = 4) -> ConfigDict:
    """A study base shrunk to seconds: synthetic 8x8 images, a tiny net, ``steps`` steps."""
    runlocal(c, steps)
    c.dataset = "synthetic"
    c.dataset_options = ConfigDict(
        {"image_size": 8, "channels": 3, "train_size": 64, "test_size": 32}
    )
    c.batch_size = 16
    c.eval_batch_size = 32
    c.log_every_steps = 2
    c.eval_every_steps = 2
    c.checkpoint_every_steps = 2
    c.optim.warmup_epochs = 0.0
    c.progress_bar = False
    if c.model == "cnn_mnist":
        c.model_kwargs.widths = (4, 8)
        c.model_kwargs.hidden = 16
    return c
