"""The defaults every config starts from, and the ``runlocal`` shrink for smoke tests."""

from __future__ import annotations

from ml_collections import ConfigDict

from cnn_jax.train.config import default_config


def base_config() -> ConfigDict:
    """Returns a config with every key the training loop reads, at its default.

    The list and its defaults live in ``cnn_jax.train.config.default_config``.

    Returns:
      An unlocked ``ConfigDict``; a config file sets what its study needs.
    """
    return default_config()


def runlocal(
    c: ConfigDict,
    steps: int = 20,
    *,
    batch_size: int = 32,
    eval_batch_size: int = 1000,
    keep_dataset_options: bool = False,
) -> ConfigDict:
    """Shrinks a config to a few seconds: ``steps`` steps, small batches, frequent logs.

    Args:
      c: the config to shrink (modified in place).
      steps: training steps.
      batch_size: the training batch.
      eval_batch_size: the evaluation batch.
      keep_dataset_options: keep ``c.dataset_options`` (default: cleared, so a subset
        or resolution option of the full run does not apply).

    Returns:
      ``c``.
    """
    c.batch_size = batch_size
    c.eval_batch_size = eval_batch_size
    c.num_epochs = None
    c.num_train_steps = steps
    c.log_every_steps = max(steps // 4, 1)
    c.eval_every_steps = steps
    c.checkpoint_every_steps = max(steps // 2, 1)
    if not keep_dataset_options:
        c.dataset_options = ConfigDict()
    return c


def parse_variants(arg: str | None, known: tuple[str, ...]) -> set[str]:
    """Parses ``'a,b'`` from ``config.py:a,b``.

    Args:
      arg: the text after the colon, or None.
      known: the variants the config file has.

    Returns:
      The set of variants.

    Raises:
      ValueError: for a variant the file does not have.
    """
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = variants - set(known)
    if unknown:
        raise ValueError(f"unknown config variant(s) {sorted(unknown)}; known: {list(known)}")
    return variants


def imagenet_config(model: str, *, image_size: int = 224) -> ConfigDict:
    """The ImageNet (ILSVRC-2012) defaults shared by the ``<model>_imagenet.py`` files.

    Data: ``imagenet2012`` read lazily (``cnn_jax.data.imagenet``): Inception-style
    random-resized crops of 8-100% of the area and horizontal flips for training, the
    central crop after resizing to ``image_size * 256 / 224`` for evaluation, both
    standardized with the ImageNet mean/std that torchvision and Keras use. The local
    source reads ``<data_dir>/imagenet2012/{train,val}/<wnid>/*.JPEG``; set
    ``--config.source=tfds`` for a prepared tfds ``imagenet2012`` (manual download).

    Args:
      model: a ``cnn_jax.models.MODELS`` name.
      image_size: the training crop.

    Returns:
      The config; each file sets its paper's optimizer, schedule and batch.
    """
    c = base_config()
    c.model = model
    c.dataset = "imagenet2012"
    c.dataset_options = ConfigDict({"image_size": image_size, "num_workers": 16})
    c.normalization = "standardize"
    c.eval_batch_size = 256
    c.half_precision = True
    c.log_every_steps = 500
    c.checkpoint_every_steps = 5000
    return c


def imagenet_runlocal(c: ConfigDict, image_size: int = 32, steps: int = 6) -> ConfigDict:
    """Shrinks an ImageNet config to seconds on a CPU: synthetic images, a few steps.

    The model, optimizer and schedule stay those of the study; the data becomes the
    10-class ``synthetic`` set at ``image_size`` (the smallest input the model accepts).

    Args:
      c: the config (modified in place).
      image_size: the synthetic images' side.
      steps: training steps.

    Returns:
      ``c``.
    """
    runlocal(c, steps)
    c.dataset = "synthetic"
    c.dataset_options = ConfigDict({"image_size": image_size, "train_size": 64, "test_size": 16})
    c.batch_size = 8
    c.eval_batch_size = 16
    c.half_precision = False
    c.optim.warmup_epochs = 0.0
    c.progress_bar = False
    c.augment = ("horizontal_flip",)
    return c
