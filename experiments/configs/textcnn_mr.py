r"""Kim (2014)'s sentence CNN on MR (movie-review polarity), 10-fold cross-validation.

Commands (from the repository root, in the venv). One fold through the launcher:
  python -m experiments.main --config=experiments/configs/textcnn_mr.py:cpu \
      --workdir=runs/textcnn_mr/fold_0 --config.dataset_options.fold=0
The paper's protocol, every fold and a table (``experiments/cross_validate.py`` runs
``train_and_evaluate`` once per fold):
  python -m experiments.cross_validate --config=experiments/configs/textcnn_mr.py:cpu \
      --workdir=runs/textcnn_mr_cv
CNN-static / CNN-non-static need word vectors (word2vec ``.bin`` or ``.txt``, or GloVe):
  python -m experiments.cross_validate --config=experiments/configs/textcnn_mr.py:static \
      --workdir=runs/textcnn_static_cv --vectors=GoogleNews-vectors-negative300.bin
(``cross_validate`` writes each fold's embedding matrix for that fold's vocabulary; with
``experiments.main``, set ``--config.model_kwargs.embeddings=matrix.npy``, a matrix from
:func:`cnn_jax.data.embeddings.embedding_matrix` with ``MR_VOCAB_SIZE`` rows.)

Variants (``config.py:variant[,variant]``):
  runlocal   a few steps of a small model, for smoke tests (seconds).
  cpu        the CPU budget: 3 epochs of Adam (learning rate 1e-3) instead of 25 of
             Adadelta. Adadelta moves each weight by about sqrt(eps) per step at first
             and needs Kim's 25 epochs: 3 of its epochs reached 70.2% on fold 0 here
             (ledger entry ``textcnn_mr_adadelta_3epochs``). A step of batch 48 takes
             about a second on the shared 2-core CPU.
  static     CNN-static: pre-trained vectors, kept fixed.
  nonstatic  CNN-non-static: pre-trained vectors, fine-tuned.

Model (``cnn_jax.models.TextCNN``): 300-d word vectors (CNN-rand: ``U[-0.25, 0.25]``,
trained); filter widths 3, 4, 5 with 100 maps each, ReLU, max-over-time pooling,
dropout 0.5, softmax; max-norm 3 on the output weights' columns (``optim.max_norm``, a
projection after every Adadelta step, in the optimizer chain). Training as Kim's code:
Adadelta (rho 0.95, eps 1e-6, learning rate 1.0), batch 50 (48 here), 25 epochs, sentences padded
with 4 padding words at each end. Data: MR's 10,662 sentences cut into 10 folds
(``dataset_options.fold``; ``cnn_jax.data.datasets``), the vocabulary built on the nine
training folds (``vocab_size`` is ``MR_VOCAB_SIZE``, the size of the vocabulary of all
sentences, so one config serves every fold; rows of words seen only in the held-out
fold are never read). Departure: Kim held out 10% of the training folds for early
stopping; here the model after the last epoch is evaluated.

Paper: CNN-rand 76.1%, CNN-static 81.0%, CNN-non-static 81.5% (10-fold CV).
Measured (``docs/RESULTS.md``, "Sentence CNN on MR"; ledger entry ``textcnn_mr_cpu``):
CNN-rand with ``cpu``, 77.6% over the 10 folds (sample std 1.1 points), about 30 minutes
of training on the shared 2-core CPU. CNN-static/non-static: not run (no pre-trained
vectors offline).
"""

from experiments.configs.common import base_config, parse_variants, runlocal

#: Tokens in the vocabulary of all MR sentences (``cnn_jax.data.text``'s tokenizer,
#: plus padding and unknown): an upper bound on every fold's training vocabulary.
MR_VOCAB_SIZE = 18766


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "cpu", "static", "nonstatic"))
    c = base_config()
    c.model = "textcnn"
    c.model_kwargs.vocab_size = MR_VOCAB_SIZE
    c.model_kwargs.embed_dim = 300
    c.model_kwargs.widths = (3, 4, 5)
    c.model_kwargs.maps = 100
    c.model_kwargs.dropout = 0.5
    c.model_kwargs.mode = "rand"
    c.dataset = "mr"
    c.dataset_options.fold = 0
    c.dataset_options.seed = 0
    c.batch_size = 48  # Kim: 50; 48 so that 8 devices divide it
    c.eval_batch_size = 256
    c.num_epochs = 25
    c.optim.name = "adadelta"
    c.optim.learning_rate = 1.0
    c.optim.decay = 0.95
    c.optim.eps = 1e-6
    c.optim.schedule = "constant"
    c.optim.max_norm = 3.0
    c.optim.max_norm_params = ("output/kernel",)
    c.log_every_steps = 50
    if "static" in variants or "nonstatic" in variants:
        if {"static", "nonstatic"} <= variants:
            raise ValueError("choose one of the variants 'static' and 'nonstatic'")
        c.model_kwargs.mode = "static" if "static" in variants else "non-static"
        c.model_kwargs.embeddings = ""  # set by cross_validate --vectors, or by hand
    if "cpu" in variants:
        c.num_epochs = 3
        c.optim.name = "adam"
        c.optim.learning_rate = 1e-3
    if "runlocal" in variants:
        runlocal(c, steps=10, batch_size=16, eval_batch_size=256, keep_dataset_options=True)
        c.dataset_options.max_length = 30
        c.progress_bar = False
        c.model_kwargs.embed_dim = 16
        c.model_kwargs.maps = 8
    return c
