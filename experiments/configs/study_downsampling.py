r"""Downsampling: strided convolution (All-CNN-C) against convolution + max pooling (Model C).

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_downsampling.py:cpu \
      --workdir=runs/study_downsampling

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md, "Going deeper":
``resnet_cifar10.CPU_EPOCHS`` epochs each), ``runlocal`` (seconds, synthetic data),
``rates`` (adds an axis over the learning rate, ``RATES``, so that each net is judged
at its better rate, as the paper picks one per model; combine, e.g. ``:cpu,rates``).
Without a variant: the recipe of ``resnet_cifar10.py`` for 164 epochs.

Springenberg et al. 2015: replacing each max pooling of "Model C" with a 3x3 convolution
of stride 2 (All-CNN-C, 1,369,738 parameters against 954,730) loses nothing in accuracy.
Both nets here are ``cnn_jax.models.AllConvNet`` (``downsample='conv'`` or ``'pool'``),
trained with one recipe (SGD with momentum 0.9, learning rate 0.05, weight decay 1e-4,
batch 128, crops and flips); the paper trains 350 epochs with rates picked per model.
"""

from cnn_jax.study import Axis, Study
from experiments.configs import resnet_cifar10
from experiments.configs.common import parse_variants

#: Learning rates of the ``rates`` variant (the paper searches 0.25, 0.1, 0.05, 0.01).
RATES = (0.05, 0.01)


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "rates", "runlocal"))
    extra = ",".join(sorted(variants - {"rates"}))
    base = resnet_cifar10.get_config(",".join(filter(None, ("all_cnn_c", extra))))
    base.optim.learning_rate = 0.05
    return Study(
        name="downsampling",
        base=base,
        axes=(
            Axis(
                "model_kwargs.downsample",
                ("conv", "pool"),
                labels=("strided conv (All-CNN-C)", "max pool (Model C)"),
            ),
            *((Axis("optim.learning_rate", RATES),) if "rates" in variants else ()),
        ),
        seeds=(0,),
        description=(
            "All-CNN-C's strided 3x3 convolutions against Model C's 3x3 max pooling, "
            "CIFAR-10 (resnet_cifar10.py recipe at learning rate "
            + (f"{' or '.join(map(str, RATES))})." if "rates" in variants else "0.05).")
        ),
    )
