r"""One member of the CIFAR-10 ensembles: the small CNN of the study configs, one epoch.

Commands (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/cifar10_small_cnn.py \
      --workdir=runs/cifar10_small_cnn
  python -m experiments.ensemble --boost=experiments/configs/cifar10_small_cnn.py \
      --rounds=5 --out=runs/boost_cifar10

The second trains a SAMME ensemble by resampling (``cnn_jax.ensemble.boost``): round
``r`` trains this config with seed ``r`` on ``cifar10_resampled`` drawn with the
current example weights (round 0: uniform, so it is member 0 of
``study_cifar10_bagging.py``), then predicts the whole training set to update them.

Variants: ``runlocal`` (seconds, synthetic 8x8 images, a tiny net; for tests).

Base: ``study_common.small_cifar10(epochs=1)`` (the members of
``study_cifar10_seeds.py`` and ``study_cifar10_bagging.py``), evaluated once at the end.
"""

from experiments.configs.common import parse_variants
from experiments.configs.study_common import shrink, small_cifar10


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = small_cifar10(epochs=1)
    c.eval_every_steps = None  # once, at the end: the members are scored by the ensemble
    if "runlocal" in variants:
        shrink(c)
    return c
