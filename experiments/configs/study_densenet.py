r"""DenseNet-BC-100 (k=12) against ResNet-56 and ResNet-110 at equal epochs.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_densenet.py:cpu \
      --workdir=runs/study_densenet

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md, "Going deeper":
``resnet_cifar10.CPU_EPOCHS`` epochs each), ``runlocal`` (seconds, synthetic data).
Without a variant: 300 epochs each (DenseNet-BC's schedule), an accelerator job.

All three use one recipe so that only the network differs: DenseNet-BC's (SGD with
Nesterov momentum 0.9, weight decay 1e-4, batch 64, learning rate 0.1 divided by 10 at
50% and 75% of the epochs, standardized inputs, crops and flips). Parameters (769,162;
853,018; 1,727,962) and FLOPs per image come from ``cnn_jax.models.flops``.
"""

from cnn_jax.study import Axis, Study
from experiments.configs import resnet_cifar10
from experiments.configs.common import parse_variants


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "runlocal"))
    extra = ",".join(sorted(variants))
    base = resnet_cifar10.get_config(",".join(filter(None, ("densenet_bc100", extra))))
    return Study(
        name="densenet_vs_resnet",
        base=base,
        axes=(Axis("model", ("densenet_bc100", "resnet56", "resnet110")),),
        seeds=(0,),
        description=(
            "DenseNet-BC-100 (k=12) against ResNet-56 and ResNet-110, one recipe "
            "(DenseNet-BC's), CIFAR-10."
        ),
    )
