r"""Very deep nets: ResNet-110, pre-activation ResNet-164 and ResNet-1001 (He et al. 2016).

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_very_deep.py:cpu \
      --workdir=runs/study_very_deep

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md, "Going deeper":
``CPU_STEPS`` steps of batch 64 each at learning rate 0.05 after ``CPU_WARMUP_STEPS``
of linear warm-up, the curves' start), ``runlocal``
(seconds, synthetic data). Without a variant: the paper's 164-epoch recipe (the
1001-layer net is an accelerator job: about 4.9 GFLOPs per 32x32 image and step).

ResNet-1001 runs its identical blocks through ``nn.scan`` (one compiled block per
stage); ``model_kwargs.remat`` trades compute for memory.
"""

from cnn_jax.study import Axis, Study
from experiments.configs import resnet_cifar10
from experiments.configs.common import parse_variants

#: Steps of the ``cpu`` variant.
CPU_STEPS = 150
#: Linear warm-up steps of the ``cpu`` variant (He et al. warm ResNet-110 and -1001 up).
CPU_WARMUP_STEPS = 50


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "runlocal"))
    extra = ",".join(sorted(variants))
    base = resnet_cifar10.get_config(",".join(filter(None, ("resnet110", extra))))
    if "cpu" in variants and "runlocal" not in variants:
        base.batch_size = 64
        base.num_epochs = None
        base.num_train_steps = CPU_STEPS
        base.optim.schedule = "constant"
        base.optim.learning_rate = 0.05  # 0.1 for batch 128, scaled to 64
        base.optim.warmup_epochs = CPU_WARMUP_STEPS * base.batch_size / 50_000
        base.optim.milestones = ()
        base.log_every_steps = 25
        base.eval_every_steps = CPU_STEPS
        base.checkpoint_every_steps = 50
    return Study(
        name="very_deep",
        base=base,
        axes=(Axis("model", ("resnet110", "preact_resnet164", "preact_resnet1001")),),
        seeds=(0,),
        description=(
            "ResNet-110 against the pre-activation bottleneck ResNet-164 and ResNet-1001 "
            "on CIFAR-10 (resnet_cifar10.py recipe)."
        ),
    )
