r"""The CIFAR-10 depth family: plain and residual nets, highway, pre-activation, DenseNet-BC.

Commands for the paper runs (from the repository root, in the venv; accelerator jobs):
  python -m experiments.main --config=experiments/configs/resnet_cifar10.py:resnet20 \
      --workdir=runs/resnet20_cifar10       # He et al. 2015: 8.75% test error
  python -m experiments.main --config=experiments/configs/resnet_cifar10.py:resnet56 \
      --workdir=runs/resnet56_cifar10       # He et al. 2015: 6.97%
  python -m experiments.main --config=experiments/configs/resnet_cifar10.py:densenet_bc100 \
      --workdir=runs/densenet_bc100_cifar10 # Huang et al. 2017: 4.51% (C10+)

Variants (``config.py:variant[,variant]``): at most one model name of :data:`MODELS`
(``cnn_jax.models.get_model`` names; default ``resnet20``), and optionally
  cpu       the CPU-budget form: ``CPU_EPOCHS`` epochs on the same recipe, the
            learning-rate drops scaled to the shorter run (the depth studies use it).
  runlocal  a few steps on synthetic 32x32 images, for smoke tests (seconds).

Data: CIFAR-10, the JPEG re-encoded copy of ``../shared/data`` by default (a lower
ceiling than the original pixels; ``--config.source=tfds`` reads tfds ``cifar10``).
Augmentation as the papers: random 32x32 crops of the image zero-padded by 4 and
horizontal flips.

Recipes (the papers' sections on CIFAR-10):
  * He et al. 2015 (ResNet-20 ... 1202, plain nets, and the highway and all-conv nets
    compared with them here): SGD with momentum 0.9, weight decay 1e-4, batch 128,
    learning rate 0.1 divided by 10 at 32k and 48k iterations, 64k iterations (164
    epochs of 50k images; the paper trains on 45k and keeps 5k for validation);
    per-pixel mean subtraction (``normalization='mean_image'``). ResNet-110 and 1202
    warm up at 0.01 for 400 iterations (here: 1 epoch of linear warm-up).
  * He et al. 2016 (pre-activation ResNet-164/1001): the same schedule, warm-up for
    the 1001-layer net.
  * Huang et al. 2017 (DenseNet-BC): SGD with Nesterov momentum 0.9, weight decay 1e-4,
    batch 64, learning rate 0.1 divided by 10 at 50% and 75% of 300 epochs;
    standardized inputs.
"""

from ml_collections import ConfigDict

from experiments.configs.common import base_config, parse_variants, runlocal

#: The models this file configures (``get_model`` names).
MODELS = (
    "plain20", "plain32", "plain44", "plain56", "plain110",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
    "preact_resnet164", "preact_resnet1001",
    "highway", "densenet_bc100", "densenet_bc250", "all_cnn_c", "nin",
)  # fmt: skip
#: Epochs of the ``cpu`` variant.
CPU_EPOCHS = 2
_WARMUP = ("resnet110", "resnet1202", "preact_resnet1001")


def _model(variants: set[str]) -> str:
    chosen = sorted(variants & set(MODELS)) or ["resnet20"]
    if len(chosen) != 1:
        raise ValueError(
            f"resnet_cifar10.py takes at most one model variant of {list(MODELS)}; got {chosen}"
        )
    return chosen[0]


def get_config(arg: str | None = None) -> ConfigDict:
    """Returns the config; ``arg`` selects the model and variants (see the docstring)."""
    variants = parse_variants(arg, (*MODELS, "cpu", "runlocal"))
    c = base_config()
    c.model = _model(variants)
    c.dataset = "cifar10"
    c.augment = (("random_crop", {"padding": 4}), "horizontal_flip")
    c.optim.name = "sgd"
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.optim.learning_rate = 0.1
    c.optim.schedule = "step"
    c.optim.decay_factor = 0.1
    c.log_every_steps = 100
    c.eval_batch_size = 1000
    if c.model.startswith("densenet_bc"):
        c.normalization = "standardize"
        c.optim.nesterov = True
        c.batch_size = 64
        c.num_epochs = 300
        c.optim.milestones = (150, 225)
    else:
        c.normalization = "mean_image"
        c.batch_size = 128
        c.num_epochs = 164  # 64k iterations of 128 images
        c.optim.milestones = (82, 123)  # 32k and 48k iterations
        if c.model in _WARMUP:
            c.optim.warmup_epochs = 1.0
    c.eval_every_steps = 50_000 // c.batch_size  # once an epoch
    c.checkpoint_every_steps = c.eval_every_steps
    if "cpu" in variants:
        scale = CPU_EPOCHS / c.num_epochs
        c.optim.milestones = tuple(round(m * scale, 3) for m in c.optim.milestones)
        c.num_epochs = CPU_EPOCHS
        c.optim.warmup_epochs = min(float(c.optim.get("warmup_epochs", 0.0)), 0.1)
        c.eval_every_steps = 50_000 // c.batch_size // 2  # twice an epoch
        c.log_every_steps = 50
        c.progress_bar = False
    if "runlocal" in variants:
        runlocal(c, steps=4)
        c.batch_size = 8
        c.eval_batch_size = 16
        c.dataset = "synthetic"
        c.dataset_options = ConfigDict(
            {"image_size": 32, "channels": 3, "train_size": 32, "test_size": 16}
        )
        c.optim.milestones = ()
        c.optim.warmup_epochs = 0.0
        c.progress_bar = False
    return c
