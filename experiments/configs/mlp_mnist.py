r"""A fully connected network on MNIST: Keras' ``mnist_mlp``, the lecture's "about 2% error".

Command (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/mlp_mnist.py \
      --workdir=runs/mlp_mnist --config.progress_bar=False

Variants (``config.py:variant[,variant]``):
  runlocal  20 steps on small batches, for smoke tests (seconds).

Model: ``cnn_jax.models.MLP`` as Keras' example: 784-512-512-10, ReLU, dropout 0.2
after each hidden layer, 669,706 parameters. Training as the example: RMSprop
(learning rate 1e-3, decay 0.9, no momentum; Keras' ``rho``), batch 128, a constant
learning rate, inputs scaled to [0, 1] (here standardized with MNIST's mean and std),
no augmentation. The example trains 20 epochs (98.40% test accuracy); the CPU budget
here is ``num_epochs = 5``.

Result: 2.12% test error (test loss 0.0826) after the 5 epochs with the command above
(the example's 1.60% needs its 20 epochs): the ledger entry ``mlp_mnist``
(docs/results/ledger.json; docs/RESULTS.md, "The lectures' claims").
"""

from experiments.configs.common import base_config, parse_variants, runlocal


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = base_config()
    c.model = "mlp_mnist"
    c.dataset = "mnist"
    c.normalization = "standardize"
    c.batch_size = 128
    c.num_epochs = 5
    c.optim.name = "rmsprop"
    c.optim.learning_rate = 1e-3
    c.optim.momentum = 0.0
    c.optim.decay = 0.9
    c.optim.eps = 1e-7
    c.optim.schedule = "constant"
    c.log_every_steps = 100
    c.progress_bar = False
    if "runlocal" in variants:
        runlocal(c)
    return c
