"""Training losses by name (``config.loss``), for models that are not trained with softmax.

The default, ``cross_entropy``, is the loop's own softmax cross-entropy on the model's
logits (with ``config.label_smoothing`` and ``config.aux_loss_weight``). Any other name
is a :class:`Loss` of :data:`LOSSES`: its ``fn(outputs, features, batch)`` gets the
model's outputs and features and the batch (``image``: the model's input after
augmentation, ``label``) and returns per-example ``(losses, correct)``; the training
step takes their means, the evaluation step their sums over the real examples. With
``label_to_model`` the steps call the model with ``label=batch['label']`` in training
(e.g. CapsNet's decoder reads the true class's capsule); evaluation never passes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from cnn_jax.style import wct as _wct
from cnn_jax.train import losses_capsule, losses_sequence

__all__ = ["LOSSES", "Loss", "get_loss", "loss_names"]


@dataclasses.dataclass(frozen=True)
class Loss:
    """A training loss.

    Attributes:
      fn: ``(outputs, features, batch) -> (losses, correct)``, both ``(N,)``.
      label_to_model: pass ``label=batch['label']`` to the model in training.
    """

    fn: Callable[..., tuple[Any, Any]]
    label_to_model: bool = False


#: Losses by the names ``config.loss`` takes (besides ``cross_entropy``).
LOSSES: dict[str, Loss] = {
    "capsule_margin": Loss(losses_capsule.capsule_loss, label_to_model=True),
    "wct_reconstruction": Loss(_wct.reconstruction_loss_fn),
    "wavenet_nll": Loss(losses_sequence.wavenet_loss, label_to_model=True),
}


def loss_names() -> tuple[str, ...]:
    """Every value ``config.loss`` takes."""
    return ("cross_entropy", *LOSSES)


def get_loss(name: str) -> Loss | None:
    """The loss of ``name``; None for ``cross_entropy`` (the steps' built-in loss).

    Raises:
      ValueError: naming ``config.loss`` and the known names for an unknown one.
    """
    if name == "cross_entropy":
        return None
    if name not in LOSSES:
        raise ValueError(f"`config.loss` (={name!r}) is not one of {', '.join(loss_names())}")
    return LOSSES[name]
