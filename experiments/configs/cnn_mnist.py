r"""A small modern CNN on MNIST: >= 99.4% test accuracy in 3 epochs on a 2-core CPU.

Command (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/cnn_mnist.py \
      --workdir=runs/cnn_mnist --config.progress_bar=False

Variants (``config.py:variant[,variant]``):
  runlocal  20 steps on small batches, for smoke tests (seconds).

Model: ``cnn_jax.models.CNNMnist`` as it is: two blocks of two 3x3 convolutions (32,
then 64 channels, He-normal, no bias) with BatchNorm and ReLU, each followed by 2x2 max
pooling, a 256-unit hidden layer, dropout 0.3 and a linear output; 28x28 inputs,
standardized with MNIST's mean/std. Training: AdamW (peak 2e-3, decoupled weight decay
0.05 on the kernels) with a one-cycle-style schedule (linear warm-up over half an
epoch, cosine decay to 0), label smoothing 0.1, random 28x28 crops of the image padded
by 2 pixels (edge-replicated: the padding is background), batch 32, 3 epochs.

Batch 32 rather than 64 or 128: on XLA:CPU the kernel gradient of the 28x28, 32-channel
convolutions slows down more than in proportion to the batch, while PyTorch's does not,
so small batches give the shortest JAX epochs (``python -m benchmarks.mnist_time_to_99
--step-times=32,64,128``; docs/RESULTS.md, "Training speed: CNN on MNIST against PyTorch
CPU").

Result: 99.53% test accuracy (test loss 0.1082) after the 3 epochs with the command
above: entry ``cnn_mnist`` of the results ledger (docs/results/ledger.json, with its
hardware, date, code revision and wall time; the table in docs/RESULTS.md, "Accuracy").
``python -m benchmarks.reproduce --only cnn_mnist`` reruns it and reports any drift.
"""

from experiments.configs.common import base_config, parse_variants, runlocal


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = base_config()
    c.model = "cnn_mnist"
    c.dataset = "mnist"
    c.normalization = "standardize"
    c.batch_size = 32
    c.num_epochs = 3
    c.optim.name = "adamw"
    c.optim.learning_rate = 2e-3
    c.optim.weight_decay = 0.05
    c.optim.schedule = "cosine"
    c.optim.warmup_epochs = 0.5
    c.optim.end_lr_factor = 0.0
    c.label_smoothing = 0.1
    c.augment = (("random_crop", {"padding": 2, "padding_mode": "replicate"}),)
    c.log_every_steps = 100
    c.eval_every_steps = (60_000 // c.batch_size) // 2  # half an epoch (at this batch size)
    if "runlocal" in variants:
        runlocal(c)
        c.optim.warmup_epochs = 0.0
    return c
