r"""AlexNet's four-layer CIFAR-10 CNN (the ReLU-versus-tanh figure), one activation.

Command (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/alexnet_cifar10.py:tanh \
      --workdir=runs/alexnet_cifar10_tanh --config.progress_bar=False

Variants (``config.py:variant[,variant]``): one activation of
``cnn_jax.models.alexnet_cifar.ACTIVATIONS`` (``relu`` is the default), a fixed first
layer (``sobel`` or ``gabor``; default learned), and ``runlocal`` (20 steps on small
batches, for smoke tests).

Model: ``cnn_jax.models.AlexNetCifar`` (89,578 parameters with ReLU). As in the
paper's figure, no regularization of any kind (no weight decay, dropout or
augmentation); inputs standardized per channel. Training: SGD with momentum 0.9,
batch 128, a constant learning rate (0.01 for the saturating sigmoid-like units would
be slower; the paper picked each network's fastest rate, here one rate for all),
``num_epochs = 2`` at the CPU budget. The activations study
(``study_activations.py``) runs this config over the activations.
"""

from cnn_jax.models.alexnet_cifar import ACTIVATIONS
from experiments.configs.common import base_config, parse_variants, runlocal


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, (*ACTIVATIONS, "sobel", "gabor", "runlocal"))
    acts = [v for v in variants if v in ACTIVATIONS]
    if len(acts) > 1:
        raise ValueError(f"config variants name more than one activation: {sorted(acts)}")
    c = base_config()
    c.model = "alexnet_cifar"
    c.model_kwargs.activation = acts[0] if acts else "relu"
    c.model_kwargs.first_layer = next((v for v in ("sobel", "gabor") if v in variants), "learned")
    c.dataset = "cifar10"
    c.normalization = "standardize"
    c.batch_size = 128
    c.num_epochs = 2
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.01
    c.optim.momentum = 0.9
    c.optim.schedule = "constant"
    c.log_every_steps = 40
    c.eval_every_steps = 50_000 // 128  # every epoch
    c.progress_bar = False
    if "runlocal" in variants:
        runlocal(c)
    return c
