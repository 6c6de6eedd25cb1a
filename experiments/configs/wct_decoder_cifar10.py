r"""Decoders for universal style transfer (Li et al. 2017) on CIFAR-10 upscaled.

Command (from the repository root, in the venv), one run per level k = 1..5:
  python -m experiments.main --config=experiments/configs/wct_decoder_cifar10.py:relu1,cpu \
      --workdir=runs/wct_decoder_relu1 --config.progress_bar=False

Variants (``config.py:variant[,variant]``):
  relu1 .. relu5  the level: the decoder inverts VGG-19's ``relu{k}_1`` (default relu1).
  cpu             the CPU-budget run: 300 steps of batch 16.
  runlocal        a few steps on small synthetic images, for smoke tests (seconds).

Model: ``cnn_jax.style.WCTAutoencoder`` (``wct_autoencoder``): the 32x32 CIFAR-10 images
(JPEG re-encoded, ``../shared/data``; RGB in [0, 1], no normalization) are resized 2x
to 64x64 (bilinear) and preprocessed as torchvision's VGG; a VGG-19 encoder to
``relu{k}_1`` (frozen: ``config.freeze = ('encoder',)``, and no gradient reaches it) and
Li et al.'s mirrored decoder (nearest upsampling, reflection padding; 1,731 parameters
for relu1_1 ... 12,944,451 for relu5_1). Loss ``wct_reconstruction``: mean squared
pixel error plus mean squared error of the reconstruction's ``relu{k}_1`` features
(``lambda = 1``, as the paper). Adam, learning rate 1e-4 as the paper (1e-3 in the
``cpu`` variant, whose runs are short). The evaluation's "accuracy" is 0 by
construction (a decoder has none): its metric is the test loss.

The encoder's weights are torchvision's initialization at the run's seed (no ImageNet
weights are available offline), so a decoder trained here inverts a random VGG-19, and
``cnn_jax.style.universal_stylize`` needs the encoder params of the same run. With
ImageNet weights the encoder params are replaced by ``cnn_jax.style.load_vgg19``'s
before training (not wired to ``config.init_from``, whose torchvision specs name whole
networks).

Measured on the shared 2-core machine (docs/RESULTS.md, "Neural style transfer"):
``relu1,cpu`` (the command above) reached a test loss of 0.0046 over the 10,000 test
images after 300 steps (516 s of training). The relu2 ... relu5 decoders were trained
with ``relu{k},cpu`` for about 8 minutes each, stopped by SIGTERM (the loop checkpoints
and exits before its full test evaluation, which for relu4/relu5 alone would take longer
than the training): 210, 190, 130 and 80 steps; their losses on the first 200 test
images (0.0121, 0.0635, 0.416, 1.37) come from ``python -m experiments.style_figures
--wct_eval=200``.
"""

from experiments.configs.common import base_config, parse_variants, runlocal

_LEVELS = ("relu1", "relu2", "relu3", "relu4", "relu5")


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal", "cpu", *_LEVELS))
    levels = [int(v[-1]) for v in _LEVELS if v in variants]
    if len(levels) > 1:
        raise ValueError(f"choose one level of {_LEVELS}, got {arg!r}")
    c = base_config()
    c.model = "wct_autoencoder"
    c.model_kwargs.level = levels[0] if levels else 1
    c.model_kwargs.upscale = 2
    c.loss = "wct_reconstruction"
    c.freeze = ("encoder",)
    c.dataset = "cifar10"
    c.normalization = None
    c.augment = ("horizontal_flip",)
    c.batch_size = 16
    c.eval_batch_size = 200
    c.num_epochs = 5
    c.optim.name = "adam"
    c.optim.learning_rate = 1e-4
    c.optim.schedule = "constant"
    c.log_every_steps = 100
    if "cpu" in variants:
        c.num_epochs = None
        c.num_train_steps = 300
        c.optim.learning_rate = 1e-3
        c.log_every_steps = 25
        c.eval_every_steps = 300
        c.checkpoint_every_steps = 100
    if "runlocal" in variants:
        runlocal(c, steps=4)
        c.batch_size = 8
        c.eval_batch_size = 8
        c.dataset = "synthetic"
        c.dataset_options.image_size = 16
        c.dataset_options.channels = 3
        c.dataset_options.train_size = 16
        c.dataset_options.test_size = 8
        c.model_kwargs.upscale = 1
        c.progress_bar = False
    return c
