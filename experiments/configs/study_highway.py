r"""Highway against residual against plain networks at equal depth and parameter budget.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_highway.py:cpu \
      --workdir=runs/study_highway

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md, "Going deeper": the
depth-20 trio, ``resnet_cifar10.CPU_EPOCHS`` epochs each), ``runlocal`` (seconds,
synthetic data). Without a variant: both trios at the paper's 164-epoch recipe.

The trios (CIFAR-10, ``resnet_cifar10.py`` recipe, same stem, stages and head):
  * depth 20: plain-20 and ResNet-20 (269,722 parameters), and a highway net of 22
    weighted layers along the path (19 highway layers carry a gate convolution each,
    so its widths are narrowed to 11/21/43 channels: 272,831 parameters);
  * depth 56: plain-56 and ResNet-56 (853,018), highway-58 at 11/21/45 (853,841).

Result of ``:cpu`` (2 epochs, JPEG CIFAR-10, 2-core CPU; docs/RESULTS.md, "Going
deeper"): training error plain-20 47.2%, ResNet-20 38.9%, highway-22 47.0%.
"""

from cnn_jax.study import Axis, Derived, Study
from experiments.configs import resnet_cifar10
from experiments.configs.common import parse_variants

SHALLOW = (
    {"model": "plain20"},
    {"model": "resnet20"},
    {"model": "highway", "model_kwargs": {"depth": 22, "widths": (11, 21, 43)}},
)
DEEP = (
    {"model": "plain56"},
    {"model": "resnet56"},
    {"model": "highway", "model_kwargs": {"depth": 58, "widths": (11, 21, 45)}},
)


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "runlocal"))
    extra = ",".join(sorted(variants))
    base = resnet_cifar10.get_config(",".join(filter(None, ("resnet20", extra))))
    values = SHALLOW if variants else SHALLOW + DEEP
    labels = ("plain20", "resnet20", "highway22", "plain56", "resnet56", "highway58")
    return Study(
        name="highway_residual_plain",
        base=base,
        axes=(Axis("network", values, labels=labels[: len(values)]),),
        seeds=(0,),
        derived=(Derived("epochs to 50% train error", "error", 0.5),),
        description=(
            "Plain, residual and highway nets of the same depth and parameter budget on "
            "CIFAR-10 (resnet_cifar10.py recipe)."
        ),
    )
