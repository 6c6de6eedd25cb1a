r"""Keras' ``cifar10_cnn`` example, the CIFAR-10 CNN shown on the lecture slides.

Command (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/keras_cifar10_cnn.py \
      --workdir=runs/keras_cifar10_cnn --config.progress_bar=False

Variants (``config.py:variant[,variant]``):
  runlocal  20 steps on small batches, for smoke tests (seconds).

Model: ``cnn_jax.models.KerasCifarCNN`` (conv32-conv32-pool-dropout-conv64-conv64-pool-
dropout-dense512-dropout-dense10, 1,250,858 parameters, Keras' Glorot-uniform init).
Recipe of the example: RMSprop at 1e-4 (Keras' rho 0.9, epsilon 1e-7; its ``decay=1e-6``
per-update learning-rate decay changes the rate by less than 1% over the first 5
epochs and is left out), batch 32, pixels scaled to [0, 1] (no mean subtraction),
augmentation by shifts of up to 10% of the width and height with the edge pixels
repeated (here: random 32x32 crops of the image padded by 3 with ``replicate``) and
horizontal flips; 100 epochs (its README: 75% test accuracy after 25 epochs, 79% after
50). CPU budget: ``num_epochs = 1``.

Data: CIFAR-10 (the local copy is JPEG re-encoded).

Result: 43.97% test error (test loss 1.211) after the 1 epoch with the command above,
ledger entry ``keras_cifar10_cnn`` (docs/RESULTS.md, "The lectures' claims").
"""

from experiments.configs.common import base_config, parse_variants, runlocal


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = base_config()
    c.model = "keras_cifar_cnn"
    c.dataset = "cifar10"
    c.normalization = None
    c.augment = (("random_crop", {"padding": 3, "padding_mode": "replicate"}), "horizontal_flip")
    c.batch_size = 32
    c.eval_batch_size = 1000
    c.num_epochs = 1
    c.optim.name = "rmsprop"
    c.optim.learning_rate = 1e-4
    c.optim.decay = 0.9
    c.optim.eps = 1e-7
    c.optim.schedule = "constant"
    c.log_every_steps = 100
    c.progress_bar = False
    if "runlocal" in variants:
        runlocal(c)
    return c
