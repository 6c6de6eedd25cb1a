r"""A time-delay neural network (Waibel et al. 1989) on spoken digits (FSDD).

Command (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/tdnn_fsdd.py \
      --workdir=runs/tdnn_fsdd --config.progress_bar=False

Variants (``config.py:variant[,variant]``):
  runlocal  a few steps of a small TDNN on short clips, for smoke tests (seconds).
  paper     the paper's network size: 16 mel bands, 8 hidden units seeing 3 frames, a
            10-unit layer seeing 5 frames, sigmoid units, no batch norm (16 x 3 x 8 + 8
            + 8 x 5 x 10 + 10 = 802 parameters): 31.6% on the held-out speaker
            (ledger ``tdnn_fsdd_paper``), far too small for this task.
  index     FSDD's own split (recordings 0-4 of every speaker are test) instead of the
            speaker-independent one.

Data: FSDD, 8 kHz, cropped or zero-padded to 1 s (``audio_length`` 8000, which keeps
99% of the recordings whole). Split: **speaker-independent**, the recordings of speaker
``theo`` (500, 50 per digit) are the test set and the other five speakers' 2,500 the
training set (``dataset_options.test_speakers``); no speaker of the test set is heard
in training. Model: ``cnn_jax.models.TDNN`` reading the raw audio: 40 log-mel bands
(25 ms Hann frames every 10 ms, per-utterance mean/variance normalized), three
time-delay layers of 96 units seeing 5, 3 and 3 frames with delays spaced 1, 2 and 3
frames apart (ReLU, batch norm), dropout 0.3, an output layer of 10 units seeing one
frame, averaged over time (an output frame sees 15 input frames, 150 ms, as in the
paper). Training: Adam 1e-3 with cosine decay, batch 32, 12 epochs.

Measured (``docs/RESULTS.md``, "Speech: TDNN vs 2-D CNN on FSDD"; ledger entry
``tdnn_fsdd``): 86.8% on the held-out speaker, 76,042 parameters, 68 s of training on
the shared 2-core CPU.
"""

from experiments.configs.common import base_config, parse_variants, runlocal

#: The held-out speaker of the speaker-independent split.
TEST_SPEAKERS = ("theo",)


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "paper", "index"))
    c = base_config()
    c.model = "tdnn"
    c.model_kwargs.num_mels = 40
    c.model_kwargs.hidden = (96, 96, 96)
    c.model_kwargs.context = (5, 3, 3, 1)
    c.model_kwargs.dilation = (1, 2, 3, 1)
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
    if "paper" in variants:
        c.model_kwargs = type(c.model_kwargs)(
            {"num_mels": 16, "hidden": (8,), "context": (3, 5), "act": "sigmoid",
             "batch_norm": False}
        )  # fmt: skip
        c.optim.learning_rate = 1e-2
    if "index" in variants:
        c.dataset_options.test_speakers = None
    if "runlocal" in variants:
        runlocal(c, steps=8, batch_size=16, eval_batch_size=256, keep_dataset_options=True)
        c.dataset_options.audio_length = 2400
        c.optim.schedule = "constant"
        c.progress_bar = False
        if "paper" not in variants:
            c.model_kwargs.hidden = (16, 16, 16)
    return c
