r"""Initialization: whether and how fast a 20-layer plain net trains from each scheme.

Command (from the repository root, in the venv):
  python -m experiments.study --study=experiments/configs/study_init.py:cpu \
      --workdir=runs/study_init

Variants: ``cpu`` (the CPU-budget run recorded in docs/RESULTS.md: 120 steps of batch
32 per scheme, one seed), ``runlocal`` (seconds, synthetic data). Without a variant:
5 epochs per scheme, seeds 0 and 1.

Model: ``cnn_jax.models.PlainInit`` at depth 20 **without batch normalization** (with
it, the initial scale hardly matters), its convolution kernels drawn from: zeros;
normal with standard deviation 0.01 and 0.1 ("small random"); Glorot-normal;
He-normal. Data: CIFAR-10 (the local copy is JPEG re-encoded), standardized, no
augmentation. Training: SGD with momentum 0.9, learning rate 0.01 (constant), batch
64, gradient norm clipped at 5 (so that an exploding start is recorded as slow, not
as a NaN). The per-layer signal at initialization is
``experiments/claims_init_signal.py``.
"""

from cnn_jax.study import Axis, Derived, Study
from experiments.configs.common import base_config, parse_variants
from experiments.configs.study_common import shrink

#: (label, model_kwargs) per scheme.
SCHEMES = (
    ("zeros", {"kernel_init": "zeros"}),
    ("normal_0.01", {"kernel_init": "small_random", "init_stddev": 0.01}),
    ("normal_0.1", {"kernel_init": "small_random", "init_stddev": 0.1}),
    ("glorot", {"kernel_init": "glorot_normal"}),
    ("he", {"kernel_init": "he_normal"}),
)


def base() -> object:
    """The training config every scheme starts from."""
    c = base_config()
    c.model = "plain_init"
    c.model_kwargs.depth = 20
    c.model_kwargs.batch_norm = False
    c.dataset = "cifar10"
    c.normalization = "standardize"
    c.batch_size = 64
    c.num_epochs = 5
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.01
    c.optim.momentum = 0.9
    c.optim.schedule = "constant"
    c.optim.grad_clip_norm = 5.0
    c.log_every_steps = 25
    c.eval_every_steps = 50_000 // 64
    c.progress_bar = False
    return c


def get_study(arg: str | None = None) -> Study:
    """Returns the study; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("cpu", "runlocal"))
    c, seeds = base(), (0, 1)
    if "cpu" in variants:
        c.num_epochs = None
        c.batch_size = 32
        c.num_train_steps = 120
        c.eval_every_steps = 120
        c.checkpoint_every_steps = 60
        c.log_every_steps = 10
        seeds = (0,)
    if "runlocal" in variants:
        c, seeds = shrink(c), (0,)
    return Study(
        name="init",
        base=c,
        axes=(
            Axis(
                "init",
                tuple({f"model_kwargs.{k}": v for k, v in kw.items()} for _, kw in SCHEMES),
                labels=tuple(label for label, _ in SCHEMES),
            ),
        ),
        seeds=seeds,
        derived=(
            Derived("steps to 85% train error", "error", 0.85),
            Derived("steps to 80% train error", "error", 0.8),
            Derived("steps to 75% train error", "error", 0.75),
        ),
        description=(
            "Plain-20 without batch norm on CIFAR-10 by kernel initialization: "
            "does it train, and how fast."
        ),
    )
