"""Model families. Every model is ``__call__(x, train) -> (logits, features)``."""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from cnn_jax.models.lenet import LeNet5, LeNet5Modern
from cnn_jax.models.simple import CNNMnist

__all__ = ["MODELS", "CNNMnist", "LeNet5", "LeNet5Modern", "get_model"]

#: Models by the names configs use.
MODELS: dict[str, type[nn.Module]] = {
    "lenet5": LeNet5,
    "lenet5_modern": LeNet5Modern,
    "cnn_mnist": CNNMnist,
}


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds a model by name.

    Args:
      name: a key of ``MODELS``.
      **kwargs: the model's attributes (``num_classes``, ``dtype``, ...).

    Returns:
      The flax module.

    Raises:
      ValueError: for an unknown name.
      TypeError: for attributes the model does not have.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    unknown = set(kwargs) - fields
    if unknown:
        raise TypeError(
            f"model {name!r} has no attributes {sorted(unknown)}; it takes {sorted(fields)}"
        )
    return cls(**kwargs)
