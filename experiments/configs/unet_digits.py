r"""U-Net (Ronneberger et al. 2015) on the digit-segmentation task.

Command (from the repository root, in the venv; the CPU-budget run):
  python -m experiments.main --config=experiments/configs/unet_digits.py:cpu \
      --workdir=runs/seg/unet_digits

Variants: ``runlocal`` (seconds, smoke test), ``cpu`` (500 steps of batch 16).
Model: ``cnn_jax.models.UNet`` with 'SAME' padding (so the 64x64 labels need no
cropping) and widths 16-32-64-128 (the paper's layout at a quarter of its widths, with
three poolings instead of four). Data, loss and training: ``digits_config`` below,
which the other ``*_digits.py`` configs share. Result of the ``cpu`` run:
docs/RESULTS.md, "Segmentation".
"""

from __future__ import annotations

from ml_collections import ConfigDict

from experiments.configs.common import base_config, parse_variants, runlocal

VARIANTS = ("runlocal", "cpu")


def digits_config(model: str, model_kwargs: dict, arg: str | None) -> ConfigDict:
    """The config of ``model`` on ``digit_segmentation``; ``arg`` selects variants.

    The settings every ``*_digits.py`` config shares. Data: ``digit_segmentation``
    (``cnn_jax.data.digit_segmentation``): 1-3 MNIST digits,
    scaled 0.8-1.4x and rotated up to 15 degrees, on a 64x64 canvas, 11 classes (background
    and the ten digits), images in [0, 1], no augmentation (the generator already varies
    scale, rotation and position, and label maps would have to move with the images).
    Loss: per-pixel cross-entropy (``config.loss = 'pixel_cross_entropy'``); the evaluation
    reports pixel accuracy, per-class IoU and mean IoU from a confusion matrix summed over
    the test set (``cnn_jax.train.metrics_dense``). Optimizer: Adam, learning rate 1e-3,
    batch 16. The CPU-budget variant (``cpu``) trains 500 steps (0.8 epochs of 10,000
    generated images) and evaluates on 500 test images; ``runlocal`` a few steps on 64
    training and 32 test images.

    Args:
      model: a ``cnn_jax.models.MODELS`` name.
      model_kwargs: its attributes (widths for the 64x64 task).
      arg: the variants, ``'runlocal'`` and/or ``'cpu'``.

    Returns:
      The config.
    """
    variants = parse_variants(arg, VARIANTS)
    c = base_config()
    c.model = model
    c.model_kwargs = ConfigDict(model_kwargs)
    c.dataset = "digit_segmentation"
    c.dataset_options = ConfigDict({"train_size": 10000, "test_size": 2000})
    c.normalization = None
    c.loss = "pixel_cross_entropy"
    c.batch_size = 16
    c.eval_batch_size = 200
    c.num_epochs = 10
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "constant"
    c.log_every_steps = 100
    if "cpu" in variants:
        c.num_epochs = None
        c.num_train_steps = 500
        c.dataset_options.test_size = 500
        c.log_every_steps = 50
        c.eval_every_steps = 250
        c.checkpoint_every_steps = 100
        c.progress_bar = False
    if "runlocal" in variants:
        runlocal(c, steps=8)
        c.batch_size = 8
        c.eval_batch_size = 16
        c.dataset_options = ConfigDict({"train_size": 64, "test_size": 32})
        c.progress_bar = False
    return c


def get_config(arg: str | None = None) -> ConfigDict:
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    return digits_config("unet", {"features": (16, 32, 64, 128), "padding": "SAME"}, arg)
