r"""A 2-D CNN over log-mel spectrograms ("speech as an image") on spoken digits (FSDD).

Command (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/spectrogram_cnn_fsdd.py \
      --workdir=runs/spectrogram_cnn_fsdd --config.progress_bar=False

Variants (``config.py:variant[,variant]``):
  runlocal  a few steps of a small CNN on short clips, for smoke tests (seconds).
  index     FSDD's own split (recordings 0-4 of every speaker are test) instead of the
            speaker-independent one.

Data and split: as ``tdnn_fsdd`` (1 s at 8 kHz; speaker ``theo`` held out for test,
the other five speakers for training). Model: ``cnn_jax.models.SpectrogramCNN``: the
same 40-band log-mel front end, read as a 98x40 one-channel image; three blocks of two
3x3 convolutions (16, 32, 64 channels; batch norm, ReLU) each followed by 2x2 max
pooling, global average pooling, dropout 0.3, a linear output. Training: as
``tdnn_fsdd`` (Adam 1e-3, cosine decay, batch 32, 12 epochs).

Measured (``docs/RESULTS.md``, "Speech: TDNN vs 2-D CNN on FSDD"; ledger entry
``spectrogram_cnn_fsdd``): 62.6% on the held-out speaker (93.6% on the training
speakers), 72,666 parameters; a training step takes 11x the TDNN's
(``benchmarks/speech_models_cpu.py``).
"""

from experiments.configs.common import base_config, parse_variants, runlocal
from experiments.configs.tdnn_fsdd import TEST_SPEAKERS


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "index"))
    c = base_config()
    c.model = "spectrogram_cnn"
    c.model_kwargs.num_mels = 40
    c.model_kwargs.widths = (16, 32, 64)
    c.model_kwargs.dropout = 0.3
    c.dataset = "fsdd"
    c.dataset_options.audio_length = 8000
    c.dataset_options.test_speakers = TEST_SPEAKERS
    c.batch_size = 32
    c.eval_batch_size = 256
    c.num_epochs = 12
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "cosine"
    c.log_every_steps = 50
    if "index" in variants:
        c.dataset_options.test_speakers = None
    if "runlocal" in variants:
        runlocal(c, steps=8, batch_size=16, eval_batch_size=256, keep_dataset_options=True)
        c.dataset_options.audio_length = 2400
        c.optim.schedule = "constant"
        c.progress_bar = False
        c.model_kwargs.widths = (8, 8, 8)
    return c
