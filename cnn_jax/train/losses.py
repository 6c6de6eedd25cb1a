"""Training losses by name (``config.loss``), for models that are not trained with softmax.

The default, ``cross_entropy``, is the loop's own softmax cross-entropy on the model's
logits (with ``config.label_smoothing`` and ``config.aux_loss_weight``). Any other name
is a :class:`Loss` of :data:`LOSSES`: its ``fn(outputs, features, batch)`` gets the
model's outputs and features and the batch (``image``: the model's input after
augmentation, ``label``) and returns per-example ``(losses, correct)``; the training
step takes their means, the evaluation step their sums over the real examples. With
``label_to_model`` the steps call the model with ``label=batch['label']`` in training
(e.g. CapsNet's decoder reads the true class's capsule); evaluation passes it only with
``label_in_eval`` (a likelihood given the true label, e.g. WaveNet's, rather than a
prediction of it). ``top5`` False: the outputs are not class scores, and evaluation
reports the loss's ``correct`` count as ``top5`` too instead of a top-5 over the outputs.
``config.loss_options`` (a dict) is passed to ``fn`` (and ``eval_sums``) as keywords.

Evaluation-metrics hook: a loss with ``eval_sums(outputs, features, batch, mask,
**options)`` adds arrays of its own (e.g. a segmentation confusion matrix) to the
evaluation step's sums; they must be sums over the real (``mask``) examples, so that
adding them over batches and devices (``psum`` under ``pmap``, the global batch under
``jit``) gives the set's total. After the pass, ``summarize(totals)`` turns the totals
of those keys into the reported float metrics (e.g. ``miou``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

# By module path: the package attribute ``cnn_jax.style.wct`` is the function wct.
from cnn_jax.style.wct import reconstruction_loss_fn as _wct_reconstruction_loss
from cnn_jax.train import losses_capsule, losses_dense, losses_sequence
from cnn_jax.train.metrics_dense import segmentation_scores

__all__ = ["LOSSES", "Loss", "get_loss", "loss_names"]


@dataclasses.dataclass(frozen=True)
class Loss:
    """A training loss.

    Attributes:
      fn: ``(outputs, features, batch) -> (losses, correct)``, both ``(N,)``.
      label_to_model: pass ``label=batch['label']`` to the model in training.
      label_in_eval: pass it in evaluation too (requires ``label_to_model``).
      top5: evaluation's ``top5`` is a top-5 over the outputs as class scores; False:
        the loss's ``correct`` count (outputs that are not class scores).
      eval_sums: optional ``(outputs, features, batch, mask, **options) -> dict`` of
        extra evaluation sums (see the module docstring).
      summarize: ``totals -> dict[str, float]``: the reported metrics from the summed
        ``eval_sums`` (required with ``eval_sums``).
    """

    fn: Callable[..., tuple[Any, Any]]
    label_to_model: bool = False
    label_in_eval: bool = False
    top5: bool = True
    eval_sums: Callable[..., dict[str, Any]] | None = None
    summarize: Callable[[dict[str, Any]], dict[str, float]] | None = None

    def __post_init__(self) -> None:
        if self.label_in_eval and not self.label_to_model:
            raise ValueError("`label_in_eval` (=True) requires `label_to_model` (=False)")
        if (self.eval_sums is None) != (self.summarize is None):
            raise ValueError(
                "`eval_sums` and `summarize` come together; got "
                f"eval_sums={self.eval_sums!r}, summarize={self.summarize!r}"
            )


def _confusion_scores(totals: dict[str, Any]) -> dict[str, float]:
    return segmentation_scores(totals["confusion"])


def _dense(kind: str) -> Loss:
    return Loss(
        functools.partial(losses_dense.pixel_loss, kind=kind),
        eval_sums=losses_dense.dense_confusion,
        summarize=_confusion_scores,
    )


#: Losses by the names ``config.loss`` takes (besides ``cross_entropy``).
LOSSES: dict[str, Loss] = {
    "capsule_margin": Loss(losses_capsule.capsule_loss, label_to_model=True),
    "wct_reconstruction": Loss(_wct_reconstruction_loss, top5=False),
    "wavenet_nll": Loss(
        losses_sequence.wavenet_loss, label_to_model=True, label_in_eval=True, top5=False
    ),
    "pixel_cross_entropy": _dense("cross_entropy"),
    "dice": _dense("dice"),
    "pixel_cross_entropy_dice": _dense("cross_entropy_dice"),
    "reconstruction_mse": Loss(losses_dense.reconstruction_mse, top5=False),
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
