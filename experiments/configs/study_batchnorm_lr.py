r"""Batch normalization, with and without, over a learning-rate sweep.

The lecture's claim: batch normalization lets a network train at much higher learning
rates (Ioffe & Szegedy 2015).

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_batchnorm_lr.py \
      --workdir=runs/study_batchnorm_lr

Variants: ``runlocal`` (seconds, synthetic data); ``cpu`` (the CPU budget: 200 steps,
one seed: 12 runs).

Model: ``plain_init`` (He et al.'s plain CIFAR net, depth 8 = 6n + 2 with n = 1, He
initialization) with ``batch_norm`` off and on. Data: CIFAR-10 (JPEG copy),
standardized, crops and flips. Training: SGD with momentum 0.9, a constant learning
rate swept over 0.003 ... 1.0, batch 64, one epoch, two seeds. A diverged run (a
non-finite loss) is recorded as such in the table. Grid: 2 x 6 x 2 = 24 runs.

Result of ``cpu`` (200 steps): without batch norm best 24.66% at 0.01, chance at 0.3,
diverged at 1.0; with it best 35.29% at 0.01 (35.24% at 0.1) and 21.95% at 1.0 (ledger
``cifar10_plain8_*``; docs/RESULTS.md, "Batch normalization over a learning-rate sweep").
"""

from cnn_jax.study import Axis, Derived, Study
from experiments.configs.common import parse_variants
from experiments.configs.study_common import shrink, small_cifar10


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "cpu"))
    base = small_cifar10(epochs=1)
    base.model = "plain_init"
    base.model_kwargs = type(base.model_kwargs)({"depth": 8, "kernel_init": "he_normal"})
    base.optim.name = "sgd"
    base.optim.momentum = 0.9
    base.optim.schedule = "constant"
    base.optim.warmup_epochs = 0.0
    base.optim.weight_decay = 5e-4
    base.label_smoothing = 0.0
    seeds = (0, 1)
    rates = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    if "cpu" in variants:
        base.num_epochs = None
        base.num_train_steps = 200
        base.eval_every_steps = None
        base.checkpoint_every_steps = 100
        base.log_every_steps = 25
        seeds = (0,)
    if "runlocal" in variants:
        base, seeds = shrink(base), (0,)
    return Study(
        name="batchnorm_lr",
        base=base,
        axes=(
            Axis("model_kwargs.batch_norm", (False, True), labels=("no BN", "BN")),
            Axis("optim.learning_rate", rates),
        ),
        seeds=seeds,
        derived=(Derived("steps to 70% train error", "error", 0.7),),
        description="Plain-8 on CIFAR-10 with and without batch norm, SGD at a constant rate.",
    )
