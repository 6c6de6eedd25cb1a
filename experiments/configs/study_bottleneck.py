r"""1x1 bottlenecks: the same small inception net with and without its 1x1 reductions.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_bottleneck.py:cpu \
      --workdir=runs/study_bottleneck

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md: 150 steps of batch
32 each, one seed), ``runlocal`` (seconds, synthetic data). Without a variant: 10
epochs each, seeds 0 and 1.

Model: ``cnn_jax.models.InceptionCifar`` (stem, inception 3a, 3b, pool, 4a at a quarter
of table 1's widths, global average pooling) with ``reduce=True`` (figure 2b: 61,434
parameters, 42.6 M multiply-adds per 32x32 image) and ``reduce=False`` (figure 2a:
309,722 and 182.9 M). Data: CIFAR-10 (the local copy is JPEG re-encoded),
standardized, no augmentation. Training: Adam at 1e-3, constant, batch 32.

Result of ``:cpu`` (docs/RESULTS.md, "1x1 bottlenecks"; ledger
``cifar10_inception_*_150steps``): 40.06% test accuracy with the reductions, 34.13%
without, the same training loss (1.71); ``experiments.claims_bottleneck`` times the
training step 1.9x and the forward pass 3.7x slower without them.
"""

from cnn_jax.study import Axis, Derived, Study
from experiments.configs.common import base_config, parse_variants
from experiments.configs.study_common import shrink


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "runlocal"))
    c = base_config()
    c.model = "inception_cifar"
    c.dataset = "cifar10"
    c.normalization = "standardize"
    c.batch_size = 32
    c.num_epochs = 10
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "constant"
    c.log_every_steps = 25
    c.progress_bar = False
    seeds = (0, 1)
    if "cpu" in variants:
        c.num_epochs = None
        c.num_train_steps = 150
        c.eval_every_steps = 150
        c.checkpoint_every_steps = 75
        seeds = (0,)
    if "runlocal" in variants:
        c, seeds = shrink(c), (0,)
    return Study(
        name="bottleneck",
        base=c,
        axes=(Axis("model_kwargs.reduce", (True, False), labels=("with_1x1", "without_1x1")),),
        seeds=seeds,
        derived=(Derived("steps to 80% train error", "error", 0.8),),
        description=(
            "InceptionCifar with and without the 1x1 reductions (Szegedy et al. 2014, "
            "figure 2): parameters and FLOPs saved, accuracy at the same steps."
        ),
    )
