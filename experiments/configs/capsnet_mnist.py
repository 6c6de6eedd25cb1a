r"""CapsNet on MNIST (Sabour, Frosst & Hinton 2017): the paper's 0.25% test error.

Command for the full run (from the repository root, in the venv; wants an
accelerator, see below):
  python -m experiments.main --config=experiments/configs/capsnet_mnist.py \
      --workdir=runs/capsnet_mnist --config.progress_bar=False

Variants (``config.py:variant[,variant]``):
  runlocal  a few steps on small batches, for smoke tests (seconds).
  cpu       the CPU-budget run: 500 steps of batch 32 (about 0.27 epochs); measured
            2.00% test error (ledger ``capsnet_mnist_cpu``).
  baseline  the paper's baseline CNN (``capsnet_baseline``, cross-entropy) on the
            same data and augmentation; with ``cpu``: 50 steps of batch 32 (a step
            costs about nine CapsNet steps: 5x5 convolutions of 256 channels at
            28x28), so about the wall time of CapsNet's 500.
  affnist   data ``affnist_like`` on a 28x28 canvas: train = MNIST's training
            digits unchanged (max_shift 0; the up-to-2-pixel shifts still come from
            the augmentation), test = the first 1,000 test digits each under a small
            random affine map (rotation <= 20 degrees, scale 0.8-1.2 per axis, shear
            <= 0.2, no translation). With ``allow_config_change``, so that a copy of
            a finished run's workdir is evaluated on it (see below).
  clean     as ``affnist`` with every range 0: the first 1,000 MNIST test digits
            unchanged (the same pixels as ``mnist``).
  Measured (docs/RESULTS.md, "Capsule networks"): CapsNet (cpu) 2.2% error clean,
  4.9% affine; the baseline (baseline,cpu) 10.3% and 18.2%.

Affine robustness (both models trained on shifted MNIST only; a finished workdir run
again evaluates its checkpoint on the config's test split, so a copy of the workdir
is evaluated on the other set):
  python -m experiments.main --config=experiments/configs/capsnet_mnist.py:cpu \
      --workdir=runs/capsnet_mnist_cpu --config.progress_bar=False
  cp -r runs/capsnet_mnist_cpu runs/capsnet_mnist_cpu_affnist
  python -m experiments.main --config=experiments/configs/capsnet_mnist.py:cpu,affnist \
      --workdir=runs/capsnet_mnist_cpu_affnist --config.progress_bar=False
  (``:cpu,clean`` likewise; the baseline: ``:baseline,cpu,affnist`` trains on the
  same digits and evaluates on the affine set, a copy with ``:baseline,cpu,clean``
  on the clean digits.)

Model: ``cnn_jax.models.CapsNet`` (Conv1 256@9x9, PrimaryCaps 32x8D 9x9/2, DigitCaps
10x16D, 3 routing iterations, decoder 512-1024-784; 8,215,568 parameters) with
``config.loss = 'capsule_margin'`` (margin loss m+ 0.9, m- 0.1, lambda 0.5, plus 0.0005 x
the reconstruction's sum of squared errors; the decoder reads the true class's capsule
in training, the longest one at test). Data: MNIST in [0, 1] (no normalization: the
decoder's sigmoid reconstructs the pixels), shifted by up to 2 pixels in each direction
with zero padding (``random_crop`` of the image padded by 2), as in the paper. Training:
Adam (TensorFlow's defaults, learning rate 1e-3) with an exponentially decaying learning
rate (x0.96 per epoch; the paper says "exponentially decaying" without the rate), batch
128, 50 epochs (the paper does not state the number of epochs).

On a 2-core CPU a step of batch 128 takes seconds (PrimaryCaps' 9x9x256x256
convolution dominates), so a full run is an accelerator job; ``cpu`` is the budget
variant recorded in the issue's report.
"""

from experiments.configs.common import base_config, parse_variants, runlocal


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "cpu", "baseline", "affnist", "clean"))
    c = base_config()
    c.model = "capsnet"
    c.model_kwargs.num_iterations = 3
    c.loss = "capsule_margin"
    c.dataset = "mnist"
    c.normalization = None
    c.batch_size = 128
    c.eval_batch_size = 200  # DigitCaps' predictions take 737 KB an example
    c.num_epochs = 50
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "exponential"
    c.optim.decay_factor = 0.96
    c.augment = (("random_crop", {"padding": 2}),)
    c.log_every_steps = 100
    if "baseline" in variants:
        c.model = "capsnet_baseline"
        c.model_kwargs = type(c.model_kwargs)()
        c.loss = "cross_entropy"
    if "cpu" in variants:
        c.batch_size = 32
        c.num_epochs = None
        c.num_train_steps = 500
        c.optim.schedule = "constant"
        c.log_every_steps = 50
        c.eval_every_steps = 500
        c.checkpoint_every_steps = 250
    if "baseline" in variants and "cpu" in variants:
        c.num_train_steps = 50
        c.log_every_steps = 10
        c.eval_every_steps = 50
        c.checkpoint_every_steps = 50
    if variants & {"affnist", "clean"}:
        c.dataset = "affnist_like"
        c.dataset_options.canvas = 28
        c.dataset_options.test_size = 1000
        c.dataset_options.max_shift = 0
        if "clean" in variants:
            c.dataset_options.max_rotation = 0.0
            c.dataset_options.max_scale = 0.0
            c.dataset_options.max_shear = 0.0
        c.allow_config_change = True
    if "runlocal" in variants:
        runlocal(c, steps=6)
        c.batch_size = 8
        c.eval_batch_size = 16
        c.dataset = "synthetic"
        c.dataset_options.image_size = 28
        c.dataset_options.channels = 1
        c.dataset_options.train_size = 64
        c.dataset_options.test_size = 48
        c.optim.schedule = "constant"
        c.progress_bar = False
        if c.model == "capsnet":
            c.model_kwargs.conv_features = 32
            c.model_kwargs.primary_maps = 4
    return c
