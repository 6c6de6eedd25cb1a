r"""DenseNet-BC-100 (k=12) against ResNet-56 and ResNet-110 at equal epochs.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_densenet.py:cpu \
      --workdir=runs/study_densenet

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md, "Going deeper":
``resnet_cifar10.CPU_EPOCHS`` epochs each), ``runlocal`` (seconds, synthetic data),
``warmup`` (the ResNets warm up linearly over ``RESNET_WARMUP_EPOCHS``, as He et al.
warm ResNet-110 up; DenseNet-BC's cell is unchanged, its paper trains it without).
Without a variant: 300 epochs each (DenseNet-BC's schedule), an accelerator job.

All three use one recipe so that only the network differs: DenseNet-BC's (SGD with
Nesterov momentum 0.9, weight decay 1e-4, batch 64, learning rate 0.1 divided by 10 at
50% and 75% of the epochs, standardized inputs, crops and flips). Parameters (769,162;
853,018; 1,727,962) and FLOPs per image come from ``cnn_jax.models.flops``.
"""

from cnn_jax.study import Axis, Study
from experiments.configs import resnet_cifar10
from experiments.configs.common import parse_variants

#: Linear warm-up of the ResNets in the ``warmup`` variant, in epochs.
RESNET_WARMUP_EPOCHS = 0.25


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "runlocal", "warmup"))
    extra = ",".join(sorted(variants - {"warmup"}))
    base = resnet_cifar10.get_config(",".join(filter(None, ("densenet_bc100", extra))))
    models = ("densenet_bc100", "resnet56", "resnet110")
    warm_resnets = "warmup" in variants and "runlocal" not in variants
    if warm_resnets:
        warm = {"optim.warmup_epochs": RESNET_WARMUP_EPOCHS}
        values = tuple({"model": m, **({} if m == models[0] else warm)} for m in models)
        axis = Axis("model", values, labels=models)
    else:
        axis = Axis("model", models)
    return Study(
        name="densenet_vs_resnet",
        base=base,
        axes=(axis,),
        seeds=(0,),
        description=(
            "DenseNet-BC-100 (k=12) against ResNet-56 and ResNet-110, one recipe "
            "(DenseNet-BC's"
            + (f"; the ResNets warm up over {RESNET_WARMUP_EPOCHS} epochs" if warm_resnets else "")
            + "), CIFAR-10."
        ),
    )
