"""Ensemble members: trained runs (workdirs with config.json and checkpoints), predictions.

Any run of ``cnn_jax.train.train_and_evaluate`` is a member: its config is read back
from the workdir's record, its model rebuilt and its newest checkpoint restored, and
it predicts class probabilities (softmax of the logits, inference mode) for a split
of a data set through its own input pipeline (its own normalization). Members of
different models, widths or preprocessing combine as long as they have the same
classes; a resampled training set (``<base>_resampled``) predicts its base's splits.
Predictions are cached in the workdir (``predictions_<dataset>_<split>_<step>.npz``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from ml_collections import ConfigDict

__all__ = ["Member", "load_member", "member_predictions", "stack_predictions"]


@dataclasses.dataclass(frozen=True)
class Member:
    """A trained run.

    Attributes:
      name: a label (the workdir's name by default).
      workdir: the run's directory.
      config: its training config, read back from ``config.json``.
    """

    name: str
    workdir: str
    config: ConfigDict


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_member(workdir: str, name: str | None = None) -> Member:
    """The member trained in ``workdir``.

    Raises:
      ValueError: if ``workdir`` has no ``config.json`` or no checkpoint.
    """
    from cnn_jax.train.config import default_config
    from cnn_jax.train.config_record import RECORD_FILE

    path = os.path.join(workdir, RECORD_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"member {workdir!r} has no {RECORD_FILE}: not a training workdir")
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise ValueError(f"member {workdir!r} has no checkpoints")
    with open(path) as f:
        flat = json.load(f)["config"]
    config = default_config()
    for key, value in flat.items():
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            if part not in node:
                node[part] = ConfigDict()
            node = node[part]
        node[parts[-1]] = ConfigDict() if value == {} else _tuples(value)
    return Member(name or os.path.basename(os.path.normpath(workdir)), workdir, config)


def _base_dataset(config: ConfigDict) -> tuple[str, dict[str, Any]]:
    name = str(config.dataset)
    options = dict(config.get("dataset_options") or {})
    if name.endswith("_resampled"):
        name = name[: -len("_resampled")]
        for key in ("draw_seed", "draw_size", "weights_file"):
            options.pop(key, None)
    return name, options


def member_predictions(
    member: Member, split: str = "test", dataset: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The member's class probabilities and the true labels for a split, in data-set order.

    Args:
      member: the member.
      split: ``'test'`` or ``'train'`` (the base training set, unresampled).
      dataset: the data set (default: the member's, or its base if resampled).

    Returns:
      ``(probs (N, K) float32, labels (N,) int64)``.
    """
    import jax

    from cnn_jax import data as data_lib
    from cnn_jax.train import build
    from cnn_jax.train.checkpoint import Checkpointer
    from cnn_jax.train.steps import as_float_images

    config = ConfigDict(member.config.to_dict())
    base, options = _base_dataset(config)
    config.dataset = dataset or base
    config.dataset_options = ConfigDict(options)
    ckpt = Checkpointer(os.path.join(member.workdir, "checkpoints"))
    try:
        step = ckpt.latest_step()
        if step is None:
            raise ValueError(f"member {member.workdir!r} has no checkpoint")
        cache = os.path.join(member.workdir, f"predictions_{config.dataset}_{split}_{step}.npz")
        if os.path.exists(cache):
            with np.load(cache) as z:
                return z["probs"], z["labels"]
        tree = ckpt.restore(None, step)
    finally:
        ckpt.close()
    info = data_lib.get_dataset_info(config.dataset)
    model = build.build_model(config, info.num_classes)
    variables = {"params": tree["params"]}
    if tree.get("batch_stats"):
        variables["batch_stats"] = tree["batch_stats"]

    @jax.jit
    def probs_fn(x):
        logits, _ = model.apply(variables, as_float_images(x), train=False)
        return jax.nn.softmax(logits.astype(np.float32), -1)

    it = data_lib.input_pipeline(config, split, rng_seed=0, training=False)
    probs, labels = [], []
    for batch in it:
        keep = np.asarray(batch["mask"], bool)
        x = build.model_inputs(batch, info.input_key)["image"]
        probs.append(np.asarray(probs_fn(x))[keep])
        labels.append(np.asarray(batch["label"])[keep])
    out = np.concatenate(probs).astype(np.float32), np.concatenate(labels).astype(np.int64)
    tmp = f"{cache}.tmp-{os.getpid()}.npz"
    np.savez(tmp, probs=out[0], labels=out[1])
    os.replace(tmp, cache)
    return out


def stack_predictions(
    members: Sequence[Member], split: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """Every member's probabilities ``(M, N, K)`` and the labels, checked to agree.

    Raises:
      ValueError: for no members, members with different class counts, or members
        whose data sets give different labels (naming the member).
    """
    from cnn_jax.ensemble.combine import check_probabilities

    if not members:
        raise ValueError("the ensemble is empty: no members")
    probs, labels = [], None
    for m in members:
        p, y = member_predictions(m, split)
        if labels is not None and (y.shape != labels.shape or np.any(y != labels)):
            raise ValueError(
                f"member {m.name!r} was evaluated on other examples than {members[0].name!r} "
                "(different labels): members must share the data set"
            )
        probs.append(p)
        labels = y
    try:
        return check_probabilities(probs), labels
    except ValueError as e:
        raise ValueError(f"{e} (members: {[m.name for m in members]})") from e
