r"""Activations (AlexNet's figure 1): epochs to 25% training error, ReLU against tanh and others.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_activations.py:cpu \
      --workdir=runs/study_activations

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md: every activation,
1 epoch each, one seed), ``runlocal`` (seconds, synthetic data, ReLU and tanh).
Without a variant: every activation of ``cnn_jax.models.alexnet_cifar.ACTIVATIONS``
(relu, tanh, sigmoid, leaky_relu, elu, prelu, maxout), 30 epochs, seeds 0 and 1 (an
accelerator job).

Base: ``experiments/configs/alexnet_cifar10.py`` (the four-layer CNN, no
regularization, SGD with momentum at one learning rate for every activation; the
paper tuned each network's rate). The paper: the ReLU network reaches 25% training
error six times faster than the tanh one. The table's derived columns are the epochs
to 80%, 70%, 60%, 50% and 25% training error (the training error is the running accuracy
of the logged training steps); their ratio tanh / ReLU is the measured speed-up.

Result of ``:cpu`` (docs/RESULTS.md, "Activations"): after one epoch ELU 40.09% test
error, PReLU 43.44%, ReLU 45.43%, leaky ReLU 45.83%, tanh 46.55%, sigmoid 73.45%;
maxout diverged at this learning rate. Continued to 25% training error
(``experiments.claims_activations``): ReLU 6.35 epochs, tanh 10.14 (1.6x, not 6x).
"""

from cnn_jax.models.alexnet_cifar import ACTIVATIONS
from cnn_jax.study import Axis, Derived, Study
from experiments.configs import alexnet_cifar10
from experiments.configs.common import parse_variants
from experiments.configs.study_common import shrink

THRESHOLDS = (0.8, 0.7, 0.6, 0.5, 0.25)


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "runlocal"))
    base = alexnet_cifar10.get_config()
    activations, seeds = ACTIVATIONS, (0, 1)
    if "cpu" in variants:
        seeds = (0,)
        base.num_epochs = 1
        base.log_every_steps = 20
    else:
        base.num_epochs = 30
    if "runlocal" in variants:
        base, seeds = shrink(base), (0,)
        activations = ("relu", "tanh")
    return Study(
        name="activations",
        base=base,
        axes=(Axis("model_kwargs.activation", activations),),
        seeds=seeds,
        derived=tuple(
            Derived(f"epochs to {round(100 * t)}% train error", "error", t) for t in THRESHOLDS
        ),
        description=(
            "AlexNet's four-layer CIFAR-10 CNN (alexnet_cifar10.py) by activation; "
            "the paper: ReLU reaches 25% training error 6x faster than tanh."
        ),
    )
