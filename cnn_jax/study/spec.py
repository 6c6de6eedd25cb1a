"""What a study is: a base training config, a grid over one or two settings, seeds.

A study config file (``experiments/configs/study_<name>.py``) returns a :class:`Study`
from ``get_study(arg)``. Each *cell* of the study is one training run: the base config
with one value of every axis set, and one seed. :func:`cells` lists them in a fixed
order (first axis slowest, seeds fastest) with a file-system-safe name each.

Settings are dotted keys of the training config (``optim.learning_rate``,
``normalization``, ``model``, ``model_kwargs.widths``): a key must exist in the base
config, except inside the free-form blocks ``model_kwargs`` and ``dataset_options``,
where new keys may be added. An axis value may also be a ``dict`` of several settings
(``{"model": "x", "model_kwargs": {...}}``) when one setting implies others.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict

from cnn_jax.train.config import FREE_FORM

__all__ = ["Axis", "Cell", "Derived", "Study", "apply_settings", "cells", "load_study", "set_key"]


@dataclasses.dataclass(frozen=True)
class Axis:
    """One setting varied by the study.

    Attributes:
      key: the dotted config key (its name in tables and plots), or a free label when
        every value is a dict of settings.
      values: the values, in order; each a value for ``key``, or a ``dict`` mapping dotted
        keys to values (a bundle of settings).
      labels: a short label per value (default: ``repr``-like text of the value).
    """

    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"`Axis.key` (={self.key!r}) must be a non-empty string")
        if not isinstance(self.values, tuple | list) or not self.values:
            raise ValueError(f"`Axis.values` of {self.key!r} (={self.values!r}) must be non-empty")
        object.__setattr__(self, "values", tuple(self.values))
        if self.labels is not None:
            labels = tuple(str(s) for s in self.labels)
            if len(labels) != len(self.values):
                raise ValueError(
                    f"`Axis.labels` of {self.key!r} has {len(labels)} labels for "
                    f"{len(self.values)} values"
                )
            object.__setattr__(self, "labels", labels)
        names = self.names()
        if len(set(names)) != len(names):
            raise ValueError(f"`Axis` {self.key!r} has repeated labels {names}; set `labels`")

    def names(self) -> tuple[str, ...]:
        """The label of every value."""
        if self.labels is not None:
            return self.labels
        return tuple(_label(v) for v in self.values)


def _label(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple | list) and not value:
        return "none"
    if isinstance(value, tuple | list):
        return "+".join(_label(v[0] if isinstance(v, tuple | list) else v) for v in value)
    return str(value)


@dataclasses.dataclass(frozen=True)
class Derived:
    """A metric computed from a cell's logged curve: the first step that crosses a threshold.

    ``value(row)`` is ``row[metric]`` or, for ``metric='error'``, ``1 - row['accuracy']``.
    The result is the first logged step of ``split`` whose value is ``<= threshold``
    (``below=True``) or ``>= threshold``, and that step in epochs; NaN if never reached
    (the table prints "not reached").

    Attributes:
      name: the column name, e.g. ``"steps to 25% train error"``.
      metric: a logged metric name (``loss``, ``accuracy``) or ``error``.
      threshold: the level to cross.
      split: ``train`` or ``test``.
      below: cross downwards (error, loss) or upwards (accuracy).
    """

    name: str
    metric: str
    threshold: float
    split: str = "train"
    below: bool = True

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"`Derived.split` (={self.split!r}) must be 'train' or 'test'")
        if not math.isfinite(self.threshold):
            raise ValueError(f"`Derived.threshold` (={self.threshold!r}) must be finite")


@dataclasses.dataclass(frozen=True)
class Study:
    """A grid of training runs over one or two settings and several seeds.

    Attributes:
      name: the study's name (titles of the table and plots).
      base: the training config every cell starts from (not modified).
      axes: one or two :class:`Axis`.
      seeds: the seeds; each cell runs once per seed (``config.seed``).
      derived: extra table columns computed from the curves.
      description: a line or two for the top of ``table.md``.
    """

    name: str
    base: ConfigDict
    axes: tuple[Axis, ...]
    seeds: tuple[int, ...] = (0,)
    derived: tuple[Derived, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        axes = tuple(self.axes)
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "derived", tuple(self.derived))
        if not 1 <= len(axes) <= 2:
            raise ValueError(f"a study varies one or two settings, got {len(axes)} axes")
        if len({a.key for a in axes}) != len(axes):
            raise ValueError(f"the axes repeat a setting: {[a.key for a in axes]}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`Study.seeds` (={self.seeds!r}) must be distinct and non-empty")
        for s in self.seeds:
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                raise ValueError(f"`Study.seeds` entry {s!r} must be a non-negative int")
        for axis in axes:
            keys = [axis.key] + [k for v in axis.values if isinstance(v, Mapping) for k in v]
            if "seed" in keys and len(self.seeds) > 1:
                raise ValueError(
                    f"axis {axis.key!r} sets 'seed' and the study has several seeds: list "
                    "the seeds in `Study.seeds`, or give the study one seed"
                )
        for axis in axes:  # every setting names a key of the config (ValueError naming it)
            for value in axis.values:
                apply_settings(self.base, _settings(axis, value))


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run of a study.

    Attributes:
      name: a file-system-safe name (the sub-workdir).
      labels: the label of this cell's value on each axis.
      seed: its seed.
      config: the full training config.
    """

    name: str
    labels: tuple[str, ...]
    seed: int
    config: ConfigDict


def _settings(axis: Axis, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    return {axis.key: value}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def set_key(config: ConfigDict, key: str, value: Any) -> None:
    """Sets the dotted ``key`` of ``config`` in place.

    Raises:
      ValueError: naming ``key`` if it is not a key of ``config`` (new keys are allowed
        only under the free-form blocks ``model_kwargs`` and ``dataset_options``).
    """
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise ValueError(f"study setting {key!r} is not a dotted config key")
    parts = key.split(".")
    free = len(parts) > 1 and parts[0] in FREE_FORM
    node = config
    for part in parts[:-1]:
        if part not in node:
            if not free:
                raise ValueError(_unknown(key, config))
            node[part] = ConfigDict()
        node = node[part]
        if not isinstance(node, ConfigDict):
            raise ValueError(f"study setting {key!r}: {part!r} is not a block of the config")
    if parts[-1] not in node and not free:
        raise ValueError(_unknown(key, config))
    if isinstance(value, Mapping) and not isinstance(value, ConfigDict):
        value = ConfigDict(dict(value))
    node[parts[-1]] = copy.deepcopy(value)


def _unknown(key: str, config: ConfigDict) -> str:
    return (
        f"unknown study setting {key!r}: the training config has no such key (new keys "
        f"are allowed only under {sorted(FREE_FORM)}); top-level keys: {sorted(config.keys())}"
    )


def apply_settings(base: ConfigDict, settings: Mapping[str, Any]) -> ConfigDict:
    """A copy of ``base`` with the dotted ``settings`` set (see :func:`set_key`)."""
    config = copy.deepcopy(base)
    config.unlock()
    for key, value in settings.items():
        set_key(config, key, value)
    return config


def cells(study: Study) -> list[Cell]:
    """Every run of ``study``: first axis slowest, seeds fastest."""
    grids: list[list[tuple[str, dict[str, Any]]]] = [[]]
    for axis in study.axes:
        grids = [
            [*g, (label, _settings(axis, value))]
            for g in grids
            for label, value in zip(axis.names(), axis.values, strict=True)
        ]
    out = []
    for g in grids:
        settings: dict[str, Any] = {}
        for _, s in g:
            settings.update(s)
        labels = tuple(label for label, _ in g)
        parts = [
            f"{_safe(a.key)}={_safe(label)}" for a, label in zip(study.axes, labels, strict=True)
        ]
        for seed in study.seeds:
            config = apply_settings(study.base, settings)
            seed = int(settings.get("seed", seed))  # an axis may set the seed (one study seed)
            config.seed = seed
            name = "__".join([*parts, f"seed={seed}"])
            out.append(Cell(name=name, labels=labels, seed=seed, config=config))
    return out


def load_study(spec: str) -> Study:
    """The study of a config file: ``path/to/study_x.py[:variant]`` -> ``get_study(variant)``.

    Raises:
      ValueError: if the file does not exist or defines no ``get_study``, or it returns
        something other than a :class:`Study`.
    """
    import importlib.util
    import os

    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(f"`--study` (={spec!r}): no file {path!r}")
    name = "_study_" + _safe(os.path.splitext(os.path.basename(path))[0])
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_study"):
        raise ValueError(f"`--study` (={spec!r}): {path} defines no get_study(arg)")
    study = module.get_study(arg or None)
    if not isinstance(study, Study):
        raise ValueError(f"`--study` (={spec!r}): get_study returned {type(study).__name__}")
    return study
