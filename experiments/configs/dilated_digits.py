r"""Yu & Koltun (2016)'s context module on a small front end, on the digit-segmentation task.

Command (from the repository root, in the venv; the CPU-budget run):
  python -m experiments.main --config=experiments/configs/dilated_digits.py:cpu \
      --workdir=runs/seg/dilated_digits

Variants: ``runlocal`` (seconds, smoke test), ``cpu`` (the CPU-budget run).
Model: ``cnn_jax.models.DilatedNet``: a front end of three blocks of two 3x3 convs
(32, 64, 64 channels; the first two blocks end with a 2x2 pool, output stride 4), a 1x1
classifier to the 11 classes, the basic context module (dilations 1, 1, 2, 4, 8, 16, 1,
identity-initialized) on the 16x16 score maps, and bilinear upsampling to 64x64. Data,
loss and training: see ``unet_digits.digits_config``. Result: docs/RESULTS.md, "Segmentation".
"""

from experiments.configs.unet_digits import digits_config


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    return digits_config("dilated_net", {"frontend": (32, 64, 64), "num_pools": 2}, arg)
