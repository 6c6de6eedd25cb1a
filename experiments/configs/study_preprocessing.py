r"""Preprocessing: none vs per-channel mean vs mean image vs standardization vs ZCA whitening.

The lecture's claim: subtracting the per-channel mean (VGG) or the mean image (AlexNet)
is enough; whitening is not needed for CNNs.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_preprocessing.py \
      --workdir=runs/study_preprocessing

Variants: ``runlocal`` (seconds, synthetic data); ``long`` (one epoch instead of 300
steps).

Base: ``study_common.small_cifar10`` (the small CNN on CIFAR-10, random crops and
flips, AdamW with a cosine schedule) for 300 steps of batch 64 (0.38 epoch) at the CPU
budget, evaluated once at the end, one seed. The axis is ``config.normalization``:
``None`` (pixels in [0, 1]), ``channel_mean``, ``mean_image``, ``standardize``
(per-channel mean and std) and ``zca`` (``cnn_jax.data.whitening``, eps 1e-2, fitted on
the training set). The network has batch normalization after every convolution, which
itself re-centres and rescales the first layer's outputs.

Result (13 min for the five on the shared 2-core CPU): test accuracy 48.31% (none),
47.55% (channel_mean), 47.14% (mean_image), 47.65% (standardize), 45.82% (zca); ledger
``cifar10_preprocessing_*``, docs/RESULTS.md, "Preprocessing".
"""

from cnn_jax.study import Axis, Derived, Study
from experiments.configs.common import parse_variants
from experiments.configs.study_common import shrink, small_cifar10


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "long"))
    base = small_cifar10(epochs=1)
    if "long" not in variants:
        base.num_epochs = None
        base.num_train_steps = 300
        base.eval_every_steps = None
        base.checkpoint_every_steps = 150
        base.log_every_steps = 50
    if "runlocal" in variants:
        base = shrink(base)
    return Study(
        name="preprocessing",
        base=base,
        axes=(
            Axis(
                "normalization",
                (None, "channel_mean", "mean_image", "standardize", "zca"),
                labels=("none", "channel_mean", "mean_image", "standardize", "zca"),
            ),
        ),
        seeds=(0,),
        derived=(Derived("steps to 60% train error", "error", 0.6),),
        description=(
            "The small CIFAR-10 CNN (study_common.small_cifar10) with each input "
            "normalization; CIFAR-10 is the JPEG re-encoded copy."
        ),
    )
