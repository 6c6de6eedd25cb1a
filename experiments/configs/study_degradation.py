r"""Degradation (He et al. 2015, figure 1 / 6): plain-20/56 against ResNet-20/56 on CIFAR-10.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_degradation.py:cpu \
      --workdir=runs/study_degradation

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md, "Going deeper":
``resnet_cifar10.CPU_EPOCHS`` epochs each), ``runlocal`` (seconds, synthetic data).
Without a variant every cell is the paper's 164-epoch recipe (an accelerator job).

The lecture's figure: the 56-layer plain net ends with a higher *training* error than
the 20-layer one (so the gap is not overfitting), while the 56-layer ResNet ends below
ResNet-20. ``curves.png`` has every cell's training and test curves on one figure.

Result of ``:cpu`` (2 epochs, JPEG CIFAR-10, 2-core CPU; docs/RESULTS.md, "Going
deeper"): training error plain-20 47.2%, plain-56 76.6% (degradation reproduced),
ResNet-20 38.9%, ResNet-56 66.5% (after 2 epochs the deeper ResNet is still behind;
the paper's ordering needs its 164 epochs).
"""

from cnn_jax.study import Axis, Derived, Study
from experiments.configs import resnet_cifar10
from experiments.configs.common import parse_variants

MODELS = ("plain20", "plain56", "resnet20", "resnet56")


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "runlocal"))
    extra = ",".join(sorted(variants))
    base = resnet_cifar10.get_config(",".join(filter(None, ("resnet20", extra))))
    return Study(
        name="degradation",
        base=base,
        axes=(Axis("model", MODELS),),
        seeds=(0,),
        derived=(Derived("epochs to 50% train error", "error", 0.5),),
        description=(
            "He et al. 2015's degradation: plain nets get worse with depth on the *training* "
            "set; residual nets get better. CIFAR-10, resnet_cifar10.py recipe."
        ),
    )
