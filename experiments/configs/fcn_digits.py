r"""FCN-8s (Long et al. 2015) on the digit-segmentation task.

Command (from the repository root, in the venv; the CPU-budget run):
  python -m experiments.main --config=experiments/configs/fcn_digits.py:cpu \
      --workdir=runs/seg/fcn_digits

Variants: ``runlocal`` (seconds, smoke test), ``cpu`` (the CPU-budget run).
Model: ``cnn_jax.models.FCN8s`` on a VGG-style backbone of four stages (16, 16 | 32, 32 |
64, 64 | 128, 128 channels; output stride 16), ``fc6`` a 3x3 convolution and ``fc7``
1x1 of 256 channels with dropout 0.5, and the two skip fusions of FCN-8s (here from
pool3 and pool2: the last-but-one and last-but-two pools) with bilinear-initialized
learned upsampling. Data, loss and training: see ``unet_digits.digits_config``. Result:
docs/RESULTS.md, "Segmentation".
"""

from experiments.configs.unet_digits import digits_config


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    kwargs = {
        "stages": ((16, 16), (32, 32), (64, 64), (128, 128)),
        "fc_features": 256,
        "fc_kernel": 3,
    }
    return digits_config("fcn8s", kwargs, arg)
