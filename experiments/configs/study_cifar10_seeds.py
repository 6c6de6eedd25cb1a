r"""Five seeds of the small CIFAR-10 CNN: the members of the seed ensemble.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_cifar10_seeds.py \
      --workdir=runs/study_cifar10_seeds
  python -m experiments.ensemble --members='runs/study_cifar10_seeds/cells/*' ...

Variants: ``runlocal`` (seconds, synthetic data, two seeds).

Base: ``experiments.configs.study_common.small_cifar10`` (1 epoch). The only axis is
the model (one value): the study is the seeds.

Result (2-core CPU shared with other jobs, 50 min for the five): members 57.22% test
accuracy on average (std 0.59); their ensemble 59.40% by majority vote, 59.72% by
probability averaging, 60.45% by stacking (ledger ``cifar10_small_cnn_5seeds``,
``cifar10_ensemble_5seeds_*``; docs/RESULTS.md, "Ensembles").
"""

from cnn_jax.study import Axis, Study
from experiments.configs.common import parse_variants
from experiments.configs.study_common import shrink, small_cifar10


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    base = small_cifar10(epochs=1)
    seeds = (0, 1, 2, 3, 4)
    if "runlocal" in variants:
        base, seeds = shrink(base), (0, 1)
    return Study(
        name="cifar10_seeds",
        base=base,
        axes=(Axis("model", ("cnn_mnist",), labels=("small_cnn",)),),
        seeds=seeds,
        description="The small CIFAR-10 CNN (study_common.small_cifar10), one run per seed.",
    )
