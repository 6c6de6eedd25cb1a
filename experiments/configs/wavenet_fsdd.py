r"""WaveNet (van den Oord et al. 2016) on spoken digits (FSDD, 8 kHz), conditioned on the digit.

Command (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/wavenet_fsdd.py:cpu \
      --workdir=runs/wavenet_fsdd --config.progress_bar=False
  python -m experiments.wavenet_sample --workdir=runs/wavenet_fsdd

Variants (``config.py:variant[,variant]``):
  runlocal  a small WaveNet on 512-sample clips for a few steps (seconds).
  cpu       the CPU-budget run recorded in docs/RESULTS.md: 200 steps of batch 4 on
            the first 2,048 samples (0.26 s) of each recording.

Model: ``cnn_jax.models.WaveNetScorer`` (``wavenet_scorer``): two stacks of dilated
causal convolutions with dilations 1, 2, ..., 512 (20 blocks, kernel 2, receptive
field 2,048 samples = 256 ms), 32 residual, 32 gate and 128 skip channels, a 256-way
softmax over 8-bit mu-law codes, global conditioning on the digit (an embedding per
block): 266,496 parameters. Loss ``wavenet_nll``: the negative log-likelihood in bits
per sample over each recording up to its last non-zero sample (the model encodes the
raw audio itself); ``test_loss`` is its mean over the 300 test recordings, each scored
with its true digit (the loss passes the label to the model in evaluation too, so
one forward pass per batch). ``test_accuracy`` is the next-sample accuracy (the
most likely code is the true one). Data: FSDD's standard split (2,700 train / 300
test recordings, indices 0-4 of each speaker and digit held out), the first 4,096
samples (0.51 s; 70% of the recordings are shorter) of each recording.

Training: Adam, learning rate 1e-3, gradient norm clipped at 1. The paper trains far
longer on far more data; the ``cpu`` variant is a budget run on the 2-core CPU.

Result (cpu variant, on the 2-core CPU shared with parallel jobs, 2026-12-02): test NLL
5.765 bits per sample (8 for a uniform guess), next-sample accuracy 6.7%, after 615 s
of training (the evaluation, ten ids per recording, took another 10 minutes); the
generated digits are still noise bursts at this budget. See ``docs/RESULTS.md``
(WaveNet on FSDD) and the ledger entry ``wavenet_fsdd``.
"""

from experiments.configs.common import base_config, parse_variants, runlocal


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "cpu"))
    c = base_config()
    c.model = "wavenet_scorer"
    c.model_kwargs.dilations = tuple(2**i for i in range(10)) * 2
    c.model_kwargs.residual_channels = 32
    c.model_kwargs.gate_channels = 32
    c.model_kwargs.skip_channels = 128
    c.loss = "wavenet_nll"
    c.dataset = "fsdd"
    c.dataset_options.audio_length = 4096
    c.batch_size = 8
    c.eval_batch_size = 8
    c.num_epochs = 20
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "constant"
    c.optim.grad_clip_norm = 1.0
    c.log_every_steps = 50
    if "cpu" in variants:
        c.dataset_options.audio_length = 2048
        c.batch_size = 4
        c.num_epochs = None
        c.num_train_steps = 200
        c.log_every_steps = 20
        c.eval_every_steps = 200
        c.checkpoint_every_steps = 40
    if "runlocal" in variants:
        runlocal(c, steps=6)
        c.batch_size = 8
        c.eval_batch_size = 80
        c.dataset_options.audio_length = 512
        c.model_kwargs.dilations = (1, 2, 4, 8, 16)
        c.model_kwargs.residual_channels = 8
        c.model_kwargs.gate_channels = 8
        c.model_kwargs.skip_channels = 16
        c.progress_bar = False
    return c
