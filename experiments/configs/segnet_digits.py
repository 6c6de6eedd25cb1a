r"""SegNet (Badrinarayanan et al. 2017) on the digit-segmentation task.

Command (from the repository root, in the venv; the CPU-budget run):
  python -m experiments.main --config=experiments/configs/segnet_digits.py:cpu \
      --workdir=runs/seg/segnet_digits

Variants: ``runlocal`` (seconds, smoke test), ``cpu`` (the CPU-budget run).
Model: ``cnn_jax.models.SegNet`` with three encoder stages of 16, 16 | 32, 32 | 64, 64,
64 channels (VGG-16's first three stages at a quarter of the width), batch norm, and
the decoder that unpools with the encoder's max-pooling indices. Data, loss and
training: see ``unet_digits.digits_config``. Result: docs/RESULTS.md, "Segmentation".
"""

from experiments.configs.unet_digits import digits_config


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    stages = ((16, 16), (32, 32), (64, 64, 64))
    return digits_config("segnet", {"stages": stages}, arg)
