"""The training config: every key ``train_and_evaluate`` reads, its default, and its checks.

:func:`default_config` is the one list of keys. Experiment files start from it and
set what their study needs; the launcher locks the result, so every key listed here
(and only those) can be set from the command line, e.g.
``--config.init_from.name=resnet18 --config.init_from.path=w.pth``.
:func:`validate_config` rejects a key that is not in it, naming the key.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ml_collections import ConfigDict, config_dict

from cnn_jax.ops._validate import is_int

__all__ = [
    "FREE_FORM",
    "KNOWN_KEYS",
    "OPTIM_KEYS",
    "RANGES",
    "REQUIRED",
    "default_config",
    "validate_config",
]


def default_config() -> ConfigDict:
    """Returns a config holding every key the training loop reads, at its default.

    Returns:
      An unlocked ``ConfigDict``.
    """
    c = ConfigDict()
    # Model (cnn_jax.models).
    c.model = ""  # a cnn_jax.models.MODELS name (required)
    c.model_kwargs = ConfigDict()  # the model's constructor arguments (free form)
    c.half_precision = False  # bfloat16 compute, float32 parameters
    # Data (cnn_jax.data.input_pipeline).
    c.dataset = ""  # a cnn_jax.data.load_dataset name (required)
    c.data_dir = config_dict.placeholder(str)  # default: $CNN_JAX_DATA_DIR or ../shared/data
    c.cache_dir = config_dict.placeholder(str)  # default: $CNN_JAX_CACHE_DIR or ~/.cache
    c.source = "local"  # "local" files or "tfds"
    c.tfds_data_dir = config_dict.placeholder(str)  # tfds's data_dir with source="tfds"
    c.dataset_options = ConfigDict()  # options of the data set's loader (free form)
    c.normalization = config_dict.placeholder(str)  # standardize, channel_mean, mean_image
    c.pad_to = config_dict.placeholder(int)  # zero-pad the images to this side
    c.shuffle = True  # shuffle the training set every epoch
    c.augment = ()  # names or (name, kwargs) pairs of cnn_jax.data.augmentations
    # Run length and batches.
    c.batch_size = 128  # global training batch (over every device and process)
    c.eval_batch_size = 1000  # global evaluation batch
    c.num_epochs = config_dict.placeholder(int)  # run length in epochs, or
    c.num_train_steps = config_dict.placeholder(int)  # in steps (set exactly one)
    # Optimization (cnn_jax.train.optim).
    c.optim = ConfigDict(
        dict(
            name="sgd",  # sgd, adam, adamw, rmsprop or adadelta
            learning_rate=0.1,  # peak learning rate
            momentum=0.9,  # sgd and rmsprop momentum (0: none)
            nesterov=False,  # sgd: Nesterov momentum
            b1=0.9,  # adam(w): first-moment decay
            b2=0.999,  # adam(w): second-moment decay
            eps=1e-8,  # adam(w), rmsprop: denominator epsilon
            decay=0.9,  # rmsprop, adadelta: squared-gradient decay (adadelta's rho)
            schedule="cosine",  # constant, cosine, step or exponential
            warmup_epochs=0.0,  # linear warm-up from 0, in epochs
            end_lr_factor=0.0,  # cosine: final learning rate / peak
            milestones=(),  # step: epochs at which to multiply by decay_factor
            decay_factor=0.1,  # step: factor per milestone; exponential: factor per epoch
            weight_decay=0.0,  # L2 on kernels (decoupled for adamw)
            grad_clip_norm=config_dict.placeholder(float),  # clip the global gradient norm
            # Max-norm (Kim 2014): after each step, rescale every column of the matching
            # kernels whose L2 norm exceeds max_norm back to max_norm (None: off).
            max_norm=config_dict.placeholder(float),
            max_norm_params=("output/kernel",),  # fnmatch patterns of '/'-joined param paths
            # Divide the learning rate when a metric stops improving (cnn_jax.train.plateau).
            reduce_on_plateau=ConfigDict(
                dict(
                    metric=config_dict.placeholder(str),  # e.g. test_accuracy; None: off
                    mode=config_dict.placeholder(str),  # max or min; None: from the metric
                    factor=0.1,  # multiply the learning rate by this on a plateau
                    patience=10,  # observations without improvement before a drop
                    min_delta=0.0,  # an improvement must exceed this
                    cooldown=0,  # observations ignored after a drop
                    min_scale=0.0,  # the scale of the learning rate stops at this
                )
            ),
        )
    )
    c.loss = "cross_entropy"  # or a cnn_jax.train.losses name (capsule_margin)
    c.loss_options = ConfigDict()  # keywords of a named loss (e.g. ignore_label, class_weights)
    c.label_smoothing = 0.0  # mass spread uniformly over the classes
    c.aux_loss_weight = 0.0  # weight of every auxiliary classifier's loss (GoogLeNet: 0.3)
    # Transfer learning (cnn_jax.train.transfer, cnn_jax.weights).
    c.init_from = ConfigDict(
        dict(
            source="torchvision",  # torchvision or keras
            name=config_dict.placeholder(str),  # a weights spec name, e.g. resnet18; None: off
            path=config_dict.placeholder(str),  # the weights file
            reinit=(),  # module-path patterns left at their fresh initialization
        )
    )
    c.freeze = ()  # module-path patterns trained no further (their BatchNorm frozen too)
    # Run.
    c.seed = 0  # initialization, shuffling, dropout and augmentation
    c.parallel = "jit"  # "jit" (sharded batch) or "pmap"
    c.log_every_steps = 100  # training metrics every this many steps
    c.eval_every_steps = config_dict.placeholder(int)  # default: every epoch
    # Evaluations during training read only this many test batches, evenly spaced (None:
    # the whole split); the final evaluation always reads the whole split.
    c.eval_steps = config_dict.placeholder(int)
    c.checkpoint_every_steps = config_dict.placeholder(int)  # default: every epoch
    c.keep_checkpoints = 3  # the newest checkpoints kept (at least 2)
    c.progress_bar = True  # a console progress bar (process 0)
    # Resume with a config that changes the trajectory (cnn_jax.train.config_record), e.g.
    # to train longer; the changes are logged.
    c.allow_config_change = False
    return c


_INF = float("inf")
#: ``(key, low, high, high is included, integer)`` for every number of the config whose
#: range is known (None passes where the default is a placeholder). ``cnn_jax.train.optim``
#: checks ``learning_rate``, ``weight_decay``, ``grad_clip_norm`` and ``milestones``; the
#: model and the loader check ``model_kwargs`` (e.g. dropout rates) and ``dataset_options``.
RANGES = (
    ("seed", 0, 2**32, False, True),  # jax.random.key keeps the low 32 bits only
    ("pad_to", 1, _INF, False, True),
    ("label_smoothing", 0.0, 1.0, False, False),
    ("aux_loss_weight", 0.0, _INF, False, False),
    ("optim.momentum", 0.0, 1.0, False, False),
    ("optim.b1", 0.0, 1.0, False, False),
    ("optim.b2", 0.0, 1.0, False, False),
    ("optim.eps", 0.0, _INF, False, False),
    ("optim.decay", 0.0, 1.0, False, False),
    ("optim.warmup_epochs", 0.0, _INF, False, False),
    ("optim.end_lr_factor", 0.0, _INF, False, False),
    ("optim.decay_factor", 0.0, _INF, False, False),
)


def _num(x: float) -> str:
    """``2**32`` for a large power of two, else ``x`` in short form."""
    if is_int(x) and x > 2**16 and not x & (x - 1):
        return f"2**{x.bit_length() - 1}"
    return f"{x:g}"


def _check_ranges(config: Any) -> None:
    """Each number of :data:`RANGES` is finite and in its range (ValueError naming it)."""
    for key, low, high, closed, integer in RANGES:
        node = config
        for part in key.split("."):
            node = node.get(part) if node is not None and hasattr(node, "get") else None
        if node is None:
            continue
        kind = "an int" if integer else "a number"
        ok_type = is_int(node) if integer else isinstance(node, numbers.Real)
        bracket = "]" if closed else ")"
        where = f"in [{low:g}, {_num(high)}{bracket}" if high != _INF else f">= {low:g}"
        if not ok_type or isinstance(node, bool):
            raise ValueError(f"`config.{key}` (={node!r}) must be {kind} {where}")
        inside = low <= node and (node <= high if closed else node < high)
        if not (math.isfinite(node) and inside):
            raise ValueError(f"`config.{key}` (={node!r}) must be {where}")


#: Keys every config must have.
REQUIRED = ("model", "dataset", "batch_size", "optim", "seed")
#: Blocks whose content is the model's or the data set's, not the loop's.
FREE_FORM = frozenset({"model_kwargs", "dataset_options", "loss_options"})
_DEFAULTS = default_config()
#: Every top-level key the loop and the input pipeline read.
KNOWN_KEYS = frozenset(_DEFAULTS.keys())
#: Every key of ``config.optim``.
OPTIM_KEYS = frozenset(_DEFAULTS.optim.keys())


def _check_keys(config: Any, defaults: ConfigDict, where: str) -> None:
    """Unknown keys of ``config`` (recursively, outside free-form blocks) are errors."""
    unknown = sorted(set(config.keys()) - set(defaults.keys()))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; known: {sorted(defaults.keys())}")
    for key in config:
        if key in FREE_FORM or not isinstance(defaults[key], ConfigDict):
            continue
        value = config[key]
        if value is not None and hasattr(value, "keys"):
            _check_keys(value, defaults[key], f"{where}.{key}")


def validate_config(config: ConfigDict) -> None:
    """Checks a training config before anything is built.

    Args:
      config: the experiment config.

    Raises:
      ValueError: naming the offending key and value.
    """
    import jax  # the device count; deferred so that reading the defaults needs no backend

    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"config is missing the keys {missing}")
    _check_keys(config, _DEFAULTS, "config")
    if config.get("parallel", "jit") not in ("jit", "pmap"):
        raise ValueError(f"`config.parallel` (={config.parallel!r}) must be 'jit' or 'pmap'")
    for key in (
        "batch_size",
        "eval_batch_size",
        "checkpoint_every_steps",
        "eval_every_steps",
        "eval_steps",
        "log_every_steps",
        "keep_checkpoints",
        "num_epochs",
        "num_train_steps",
    ):
        value = config.get(key)
        if value is not None and (not is_int(value) or value < 1):
            raise ValueError(f"`config.{key}` (={value!r}) must be a positive int")
    if config.get("keep_checkpoints") == 1:
        # Orbax deletes the older step while saving the new one, before its digest is
        # written: a crash in between would leave no intact checkpoint to resume from.
        raise ValueError(
            "`config.keep_checkpoints` (=1) must be at least 2, so that a crash during a "
            "save always leaves an intact checkpoint"
        )
    n = jax.device_count()
    for key in ("batch_size", "eval_batch_size"):
        if key in config and config[key] is not None and int(config[key]) % n:
            raise ValueError(
                f"`config.{key}` (={config[key]}) must be divisible by the number of "
                f"devices (={n}); use a multiple of {n}"
            )
    if config.get("num_train_steps") is None and config.get("num_epochs") is None:
        raise ValueError("set `config.num_epochs` or `config.num_train_steps`")
    _check_ranges(config)
    if config.get("num_train_steps") is not None and config.get("num_epochs") is not None:
        raise ValueError(
            f"set one of `config.num_epochs` (={config.num_epochs!r}) and "
            f"`config.num_train_steps` (={config.num_train_steps!r}), not both: the run "
            "length would be ambiguous (set the other to None; the launcher does so when "
            "one of them is given on its command line)"
        )
    from cnn_jax.train import losses, plateau

    losses.get_loss(config.get("loss", "cross_entropy"))  # raises for an unknown name

    plateau.plateau_options(config.optim)  # raises for invalid reduce_on_plateau values
