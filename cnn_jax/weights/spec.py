"""``WeightSpec`` (how a source model maps onto ours) and ``WeightMismatchError``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = ["KeyFn", "Path", "Transform", "WeightMismatchError", "WeightSpec"]

#: A module path: flax module names from the root.
Path = tuple[str, ...]
#: Module path -> the source's module prefix (PyTorch) or layer name (Keras).
KeyFn = Callable[[Path], str]
#: ``(to_ours, to_source)`` functions on a source-layout array.
Transform = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


class WeightMismatchError(ValueError):
    """The weights do not fit the model; the message lists the offending keys."""


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """How a source framework's model maps onto one of ours.

    Attributes:
      model: our variant (a module class or partial taking ``num_classes``).
      key_fn: module path -> the source's module prefix (PyTorch) or layer name (Keras).
      transforms: ``{source key: (to_ours, to_source)}`` functions on the
        source-layout array, applied before the layout rule on import and after its
        inverse on export.
      input_size: the side of the square input the source model was trained at.
      export: whether ``to_torch`` output loads into the source model
        (``load_state_dict(strict=True)``).
      model_kwargs: extra attributes for ``model`` (e.g. ``transform_input``).
      prepare: applied to a loaded state dict first, e.g. to rename the keys of old
        checkpoints (torchvision's DenseNet files use ``norm.1`` for ``norm1``).
    """

    model: Callable[..., Any]
    key_fn: KeyFn | None = None
    transforms: Mapping[str, Transform] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    input_size: int = 224
    export: bool = False
    model_kwargs: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    prepare: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
