r"""A causal dilated 1-D CNN sentence classifier on MR: a second baseline to Kim's CNN.

Commands (from the repository root, in the venv):
  python -m experiments.main --config=experiments/configs/dilated_textcnn_mr.py \
      --workdir=runs/dilated_textcnn_mr/fold_0 --config.dataset_options.fold=0
  python -m experiments.cross_validate --config=experiments/configs/dilated_textcnn_mr.py \
      --workdir=runs/dilated_textcnn_mr_cv --folds=0,1

Variants: ``runlocal`` (a few steps of a small model, seconds).

Model (``cnn_jax.models.DilatedTextCNN``): 128-d word vectors (``U[-0.25, 0.25]``),
a 1x1 projection to 128 channels, four residual causal convolutions of width 3 with
dilations 1, 2, 4, 8 (each word's unit sees it and the 30 words before it), ReLU,
max-over-time pooling over the real words, dropout 0.5, softmax. Training: Adam 1e-3
with cosine decay, batch 48, 4 epochs, max-norm 3 on the output weights as for
``textcnn_mr``. Data: as ``textcnn_mr`` (the same folds and vocabulary).

Measured (``docs/RESULTS.md``, "Sentence CNN on MR"; ledger entry
``dilated_textcnn_mr_cpu``): 75.9% on folds 0 and 1, 2,615,938 parameters.
"""

from experiments.configs.common import base_config, parse_variants, runlocal
from experiments.configs.textcnn_mr import MR_VOCAB_SIZE


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = base_config()
    c.model = "dilated_textcnn"
    c.model_kwargs.vocab_size = MR_VOCAB_SIZE
    c.model_kwargs.embed_dim = 128
    c.model_kwargs.channels = 128
    c.model_kwargs.kernel_size = 3
    c.model_kwargs.dilations = (1, 2, 4, 8)
    c.model_kwargs.dropout = 0.5
    c.dataset = "mr"
    c.dataset_options.fold = 0
    c.dataset_options.seed = 0
    c.batch_size = 48  # Kim: 50; 48 so that 8 devices divide it
    c.eval_batch_size = 256
    c.num_epochs = 4
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.schedule = "cosine"
    c.optim.max_norm = 3.0
    c.optim.max_norm_params = ("output/kernel",)
    c.log_every_steps = 50
    if "runlocal" in variants:
        runlocal(c, steps=10, batch_size=16, eval_batch_size=256, keep_dataset_options=True)
        c.dataset_options.max_length = 30
        c.progress_bar = False
        c.model_kwargs.embed_dim = 16
        c.model_kwargs.channels = 16
    return c
