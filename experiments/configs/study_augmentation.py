r"""Augmentation ablation: the library's augmentations one at a time, and combined.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_augmentation.py \
      --workdir=runs/study_augmentation

Variants: ``runlocal`` (seconds, synthetic data); ``cpu`` (the CPU budget: 1 epoch).

Base: ``study_common.small_cifar10`` for 5 epochs, without host normalization (pixels
in [0, 1], which ``color_jitter`` needs), one seed. The axis is ``config.augment``:
none; random 32x32 crops of the image padded by 4 (reflect); horizontal flips; cutout
(8x8); colour jitter (brightness, contrast, saturation 0.4, hue 0.1); AlexNet's PCA
colour noise (``pca_colour_noise``, std 0.1, ImageNet's eigenvectors); and all of them
together. Augmentation trades training accuracy for test accuracy, which shows only
after several epochs.

Result of ``cpu`` (1 epoch): test accuracy 59.13% none, 55.77% crop, 60.19% flip, 56.87%
cutout, 56.81% colour jitter, 58.86% PCA colour noise, 50.47% all (ledger
``cifar10_augment_*``; docs/RESULTS.md, "Augmentation ablation").
"""

from cnn_jax.study import Axis, Study
from experiments.configs.common import parse_variants
from experiments.configs.study_common import shrink, small_cifar10

CROP = ("random_crop", {"padding": 4, "padding_mode": "reflect"})
FLIP = ("horizontal_flip", {})
CUTOUT = ("cutout", {"size": 8})
JITTER = ("color_jitter", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1})
PCA = ("pca_colour_noise", {"std": 0.1})


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "cpu"))
    base = small_cifar10(epochs=1 if "cpu" in variants else 5)
    base.normalization = None
    base.eval_every_steps = None
    if "runlocal" in variants:
        base = shrink(base)
    settings = (
        (),
        (CROP,),
        (FLIP,),
        (CUTOUT,),
        (JITTER,),
        (PCA,),
        (CROP, FLIP, CUTOUT, JITTER, PCA),
    )
    labels = ("none", "crop", "flip", "cutout", "colour_jitter", "pca_colour_noise", "all")
    return Study(
        name="augmentation",
        base=base,
        axes=(Axis("augment", settings, labels=labels),),
        seeds=(0,),
        description="The small CIFAR-10 CNN with each augmentation alone, and all together.",
    )
