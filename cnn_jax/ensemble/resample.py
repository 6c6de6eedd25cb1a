"""Resampled training sets as data sets: bootstrap samples (bagging) and weighted draws (boosting).

:func:`register_resampled` adds ``<base>_resampled`` (e.g. ``cifar10_resampled``) to the
data-set registry: its ``test`` split is the base's, its ``train`` split is drawn from
the base's training split with replacement, so it goes through the same input
pipeline, normalization, augmentation and training loop as any data set:

* the base's own options (e.g. ``synthetic``'s ``image_size``), passed on to it;
* ``draw_seed`` (default 0): the draw, ``np.random.default_rng([draw_seed, 1])``;
* ``draw_size`` (default ``None``: the base's training-set size): examples drawn;
* ``weights_file`` (default ``None``: uniform, the bootstrap of bagging): a ``.npy``
  of one non-negative weight per base training example; examples are drawn with
  probability proportional to it (boosting by resampling). Decoded arrays are cached
  by option values, so a weights file must never change under the same path
  (:func:`write_weights` names it by its content).

The training split carries ``index``, the base example each one copies (for
out-of-bag predictions). Importing :mod:`cnn_jax.ensemble` registers the resampled
versions of ``mnist``, ``cifar10`` and ``synthetic``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

__all__ = ["bootstrap_indices", "register_resampled", "resampled_name", "write_weights"]

_SUFFIX = "_resampled"


def resampled_name(base: str) -> str:
    """The name of the resampled version of ``base``."""
    return base + _SUFFIX


def bootstrap_indices(
    n: int, seed: int, size: int | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Indices drawn with replacement from ``range(n)`` (uniform, or by ``weights``).

    Raises:
      ValueError: for bad ``n``, ``size`` or ``weights``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` (={n!r}) must be a positive int")
    size = n if size is None else size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"`size` (={size!r}) must be a positive int")
    p = None
    if weights is not None:
        w = np.asarray(weights, np.float64).ravel()
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"`weights` must be {n} finite non-negative numbers, not all 0 (got shape "
                f"{w.shape})"
            )
        p = w / w.sum()
    return np.random.default_rng([seed, 1]).choice(n, size=size, replace=True, p=p)


def write_weights(weights: Any, folder: str) -> str:
    """Saves example weights as ``<folder>/weights_<sha256 prefix>.npy``; returns the path."""
    w = np.ascontiguousarray(np.asarray(weights, np.float64))
    digest = hashlib.sha256(w.tobytes()).hexdigest()[:16]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(os.path.abspath(folder), f"weights_{digest}.npy")
    if not os.path.exists(path):
        tmp = f"{path}.tmp-{os.getpid()}.npy"
        np.save(tmp, w)
        os.replace(tmp, path)
    return path


def _reader(base: str):
    def read(root: Any, opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        from cnn_jax.data import load_dataset

        opts = dict(opts)
        seed, size = opts.pop("draw_seed"), opts.pop("draw_size")
        weights_file = opts.pop("weights_file")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"`draw_seed` (={seed!r}) must be a non-negative int")
        train = load_dataset(base, "train", root, **opts)
        test = load_dataset(base, "test", root, **opts)
        n = len(train["label"])
        weights = None
        if weights_file is not None:
            if not os.path.isfile(weights_file):
                raise ValueError(f"`weights_file` (={weights_file!r}) is not a file")
            weights = np.load(weights_file)
        idx = bootstrap_indices(n, seed, size, weights)
        drawn = {k: np.asarray(v)[idx] for k, v in train.items()}
        drawn["index"] = idx.astype(np.int64)
        return {"train": drawn, "test": dict(test)}, {}

    return read


def register_resampled(base: str) -> str:
    """Registers ``<base>_resampled`` (idempotent); returns its name.

    Raises:
      ValueError: if ``base`` is not a registered data set.
    """
    import dataclasses

    from cnn_jax.data._catalog import DATASETS, get_dataset_info
    from cnn_jax.data._readers import LOCAL_READERS

    info = get_dataset_info(base)
    name = resampled_name(info.name)
    if name not in DATASETS:
        DATASETS[name] = dataclasses.replace(
            info,
            name=name,
            description=f"{info.name} with its training split resampled with replacement",
            split_sizes=dict(info.split_sizes),
            tfds_name="",
            options={**info.options, "draw_seed": 0, "draw_size": None, "weights_file": None},
        )
        LOCAL_READERS[name] = _reader(info.name)
    from cnn_jax.data.preprocess import DATASET_STATS

    if info.name in DATASET_STATS:  # normalization='standardize' uses the base's constants
        DATASET_STATS.setdefault(name, DATASET_STATS[info.name])
    return name
