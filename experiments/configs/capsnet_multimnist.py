r"""CapsNet on MultiMNIST (Sabour et al. 2017, section 6; the paper's 5.2% error).

Command (from the repository root, in the venv; an accelerator job):
  python -m experiments.main --config=experiments/configs/capsnet_multimnist.py \
      --workdir=runs/capsnet_multimnist --config.progress_bar=False

Variants (``config.py:variant[,variant]``):
  runlocal  a few steps on a small generated set, for smoke tests (seconds).
  cpu       the CPU-budget run: 600 steps of batch 32 (19,200 of 60,000 generated
            pairs) at a constant learning rate, evaluated on 2,000 test pairs at the
            end (a step takes seconds on 2 cores, an evaluated example about 0.1 s).
            Measured: 51.6% error (ledger ``capsnet_multimnist_cpu``): an early point
            of training, far from the paper's 5.2%.

Data: ``multimnist`` (``cnn_jax.data.multimnist``): two MNIST digits of different
classes, each shifted by up to 4 pixels on 36x36, overlaid; labels multi-hot. The
paper makes 60M training pairs (each digit with 1,000 others); ``train_size`` here
defaults to 600,000 (10 per digit, about 0.8 GB), set it with
``--config.dataset_options.train_size``. Evaluation as in the paper: an example is
correct when its two longest DigitCaps are its two labels (``top1`` of the run's
metrics). Model: ``CapsNet`` on 36x36 (PrimaryCaps 10x10x32 = 3,200 capsules), the
decoder reconstructing the whole image from the two labelled capsules in training
(the paper reconstructs each digit separately from its own capsule; the data sets
here carry only the overlay, so the target is the overlay) and from the two longest
at test. ``python -m experiments.capsules_figures`` draws each digit's reconstruction
from its own capsule. Training: as ``capsnet_mnist`` (Adam 1e-3, x0.96 per epoch,
batch 128), no further augmentation.
"""

from experiments.configs.common import base_config, parse_variants, runlocal


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "cpu"))
    c = base_config()
    c.model = "capsnet"
    c.model_kwargs.num_iterations = 3
    c.model_kwargs.reconstruct_top = 2
    c.loss = "capsule_margin"
    c.dataset = "multimnist"
    c.dataset_options.train_size = 600_000
    c.dataset_options.test_size = 10_000
    c.normalization = None
    c.batch_size = 128
    c.eval_batch_size = 200
    c.num_epochs = 10
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "exponential"
    c.optim.decay_factor = 0.96
    c.log_every_steps = 100
    if "cpu" in variants:
        c.dataset_options.train_size = 60_000
        c.dataset_options.test_size = 2_000
        c.batch_size = 32
        c.num_epochs = None
        c.num_train_steps = 600
        c.optim.schedule = "constant"
        c.log_every_steps = 50
        c.eval_every_steps = 200
        c.checkpoint_every_steps = 100
    if "runlocal" in variants:
        runlocal(c, steps=6)
        c.dataset_options.train_size = 64
        c.dataset_options.test_size = 16
        c.batch_size = 8
        c.eval_batch_size = 16
        c.optim.schedule = "constant"
        c.progress_bar = False
        c.model_kwargs.conv_features = 32
        c.model_kwargs.primary_maps = 4
    return c
