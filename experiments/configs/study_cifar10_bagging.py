r"""Bagging: small CIFAR-10 CNNs, each on its own bootstrap sample of the training set.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_cifar10_bagging.py \
      --workdir=runs/study_cifar10_bagging
  python -m experiments.ensemble --members='runs/study_cifar10_bagging/cells/*' \
      --out=runs/ensemble_bagging

Variants: ``runlocal`` (seconds, synthetic data, two members); ``five`` (five members).

Three members (CPU budget; ``:five`` for five). Member ``i`` trains with seed ``i``
(as member ``i`` of ``study_cifar10_seeds.py``) on ``cifar10_resampled`` with
``draw_seed = i``: 50,000 examples drawn with replacement (about 63% distinct).
Comparing this ensemble with the seeds-only one isolates what the bootstrap adds.
Base: ``study_common.small_cifar10`` (1 epoch).

Result (three members, 18 min on the shared 2-core CPU): members 57.66% on average;
majority vote 59.41%, probability averaging 60.17%, against 58.85% and 59.54% for the
seeds-only ensemble of the same three seeds (ledger ``cifar10_bagging_3_*``,
``cifar10_ensemble_3seeds_*``). With ``:five``: members 57.25%, vote 59.47%, averaging
59.77%, stacking 60.64%, against 59.40%, 59.72%, 60.45% for five seeds only (ledger
``cifar10_bagging_5_*``; docs/RESULTS.md, "Bagging against seeds only").
"""

import cnn_jax.ensemble  # registers cifar10_resampled  # noqa: F401
from cnn_jax.study import Axis, Study
from experiments.configs.common import parse_variants
from experiments.configs.study_common import shrink, small_cifar10


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "five"))
    base = small_cifar10(epochs=1)
    base.eval_every_steps = None  # once, at the end: the members are scored by the ensemble
    n = 5 if "five" in variants else 3
    if "runlocal" in variants:
        base, n = shrink(base), 2
    base.dataset = base.dataset + "_resampled"
    members = tuple({"seed": i, "dataset_options.draw_seed": i} for i in range(n))
    return Study(
        name="cifar10_bagging",
        base=base,
        axes=(Axis("member", members, labels=tuple(f"bag{i}" for i in range(n))),),
        description="The small CIFAR-10 CNN on bootstrap samples (draw i, seed i).",
    )
