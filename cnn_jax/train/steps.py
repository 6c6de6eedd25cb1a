"""Train and eval steps: pure functions of (state, batch), compiled once by the loop."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from cnn_jax.train.losses import get_loss
from cnn_jax.train.state import TrainState
from cnn_jax.train.transfer import frozen_batch_norm

__all__ = ["cross_entropy", "eval_step", "train_step"]

Array = Any


def cross_entropy(logits: Array, labels: Array, label_smoothing: float = 0.0) -> Array:
    """Per-example softmax cross-entropy with optional label smoothing (Szegedy et al. 2016).

    Args:
      logits: ``(N, K)``.
      labels: ``(N,)`` integer classes.
      label_smoothing: mass spread uniformly over the ``K`` classes.

    Returns:
      ``(N,)`` losses, in float32.
    """
    logits = logits.astype(jnp.float32)
    k = logits.shape[-1]
    targets = jax.nn.one_hot(labels, k)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def as_float_images(images: Array) -> Array:
    """uint8 images to float32 in [0, 1]; other inputs are returned unchanged.

    Only uint8 is taken for pixels: other integer inputs (``tokens``, int32 ids) reach
    the model as they are.

    Args:
      images: the model's input batch.

    Returns:
      ``images / 255`` in float32 for uint8, else ``images``.
    """
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images


def _topk_correct(logits: Array, labels: Array, k: int) -> Array:
    k = min(k, logits.shape[-1])
    top = lax.top_k(logits, k)[1]
    return jnp.any(top == labels[:, None], axis=-1)


def train_step(
    state: TrainState,
    batch: dict[str, Array],
    *,
    base_key: Array,
    schedule: optax.Schedule,
    label_smoothing: float = 0.0,
    axis_name: str | None = None,
    uses_plateau: bool = False,
    augment_ops: tuple[tuple[str, dict[str, Any]], ...] = (),
    aux_loss_weight: float = 0.0,
    frozen: tuple[str, ...] = (),
    loss: str = "cross_entropy",
    loss_options: dict[str, Any] | None = None,
) -> tuple[TrainState, dict[str, Array]]:
    """One optimizer step on a batch.

    Under ``jit`` with a sharded batch the mean over the batch is already global; under
    ``pmap`` (``axis_name`` set) gradients and metrics are averaged over devices.

    Args:
      state: the training state.
      batch: ``image`` ``(B, H, W, C)`` and ``label`` ``(B,)``.
      base_key: the run's dropout key; step ``t`` uses ``fold_in(base_key, t)`` so that a
        resumed run draws the same masks.
      schedule: the learning-rate schedule (for logging).
      label_smoothing: see ``cross_entropy``.
      axis_name: the ``pmap`` axis, or None.
      uses_plateau: multiply the optimizer's updates by ``state.plateau['scale']`` (the
        learning-rate scale of ``reduce_on_plateau``, set by the loop after each
        evaluation; ``cnn_jax.train.plateau``).
      augment_ops: on-device augmentations (``cnn_jax.data.augment``), drawn from the
        step's key.
      aux_loss_weight: weight of the cross-entropy of every auxiliary classifier (the
        model's features whose names start with ``aux_logits``, e.g. GoogLeNet's two
        heads with weight 0.3) added to the loss; the reported ``loss`` includes it and
        ``main_loss`` is the main head's alone.
      frozen: module-path patterns whose batch normalization runs in inference mode
        (``cnn_jax.train.transfer.frozen_batch_norm``); the parameters are frozen by
        the optimizer.
      loss: ``cross_entropy`` or a ``cnn_jax.train.losses`` name (``config.loss``); the
        others replace the cross-entropy (label smoothing and auxiliary heads apply to
        ``cross_entropy`` only) and give the accuracy.
      loss_options: keywords for the named loss's ``fn`` (``config.loss_options``, e.g.
        ``ignore_label`` and ``class_weights`` of the segmentation losses).

    Returns:
      ``(new_state, metrics)`` with metrics ``loss``, ``accuracy``, ``grad_norm``,
      ``learning_rate`` (the schedule's, times the ``reduce_on_plateau`` scale).
    """
    rng = jax.random.fold_in(base_key, state.step)
    if axis_name is not None:
        rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
    dropout_rng, augment_rng = jax.random.split(rng)
    images = as_float_images(batch["image"])
    if augment_ops:
        from cnn_jax.data import augment

        images = augment(images, augment_rng, augment_ops)

    custom = get_loss(loss)

    def loss_fn(params: Any) -> tuple[Array, tuple[Array, Array, Any]]:
        mutable = ["batch_stats"] if state.batch_stats else []
        extra = {"label": batch["label"]} if custom is not None and custom.label_to_model else {}
        with frozen_batch_norm(frozen):
            out = state.apply_fn(
                state.variables(params),
                images,
                train=True,
                rngs={"dropout": dropout_rng},
                mutable=mutable,
                **extra,
            )
        (logits, features), updates = out
        if custom is not None:
            losses, correct = custom.fn(
                logits, features, {**batch, "image": images}, **(loss_options or {})
            )
            return jnp.mean(losses), (jnp.mean(losses), jnp.mean(correct), updates)
        main = jnp.mean(cross_entropy(logits, batch["label"], label_smoothing))
        loss = main
        if aux_loss_weight:
            aux = [v for k, v in sorted(features.items()) if k.startswith("aux_logits")]
            for a in aux:
                loss += aux_loss_weight * jnp.mean(
                    cross_entropy(a, batch["label"], label_smoothing)
                )
        return loss, (main, jnp.mean(jnp.argmax(logits, -1) == batch["label"]), updates)

    (loss, (main_loss, accuracy, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params
    )
    if axis_name is not None:
        grads = lax.pmean(grads, axis_name)
        loss, main_loss, accuracy = lax.pmean((loss, main_loss, accuracy), axis_name)
    updates_, opt_state = state.tx.update(grads, state.opt_state, state.params)
    lr_scale = 1.0
    if uses_plateau:
        lr_scale = state.plateau["scale"]
        updates_ = jax.tree.map(lambda u: u * lr_scale.astype(u.dtype), updates_)
    new_state = state.replace(
        step=state.step + 1, opt_state=opt_state, params=optax.apply_updates(state.params, updates_)
    )
    if state.batch_stats:
        new_state = new_state.replace(batch_stats=updates["batch_stats"])
    metrics = {
        "loss": loss,
        "accuracy": accuracy,
        **({"main_loss": main_loss} if aux_loss_weight else {}),
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": jnp.asarray(schedule(state.step), jnp.float32) * lr_scale,
    }
    return new_state, metrics


def eval_step(
    state: TrainState,
    batch: dict[str, Array],
    *,
    axis_name: str | None = None,
    loss: str = "cross_entropy",
    loss_options: dict[str, Any] | None = None,
) -> dict[str, Array]:
    """Sums of loss and top-1/top-5 hits over the real (``mask``ed) examples of a batch.

    Args:
      state: the training state.
      batch: ``image``, ``label`` and optionally ``mask`` (1 for real examples, 0 for
        the padding that completes the last batch).
      axis_name: the ``pmap`` axis, or None.
      loss: as in ``train_step``; with another loss than ``cross_entropy``, ``top1``
        counts its ``correct`` examples, and so does ``top5`` for multi-hot labels
        (and for dense labels, ``(N, H, W)``) and for losses whose outputs are not
        class scores (``Loss.top5`` False). A loss with ``label_in_eval`` gets the
        model called with ``label=batch['label']``.
      loss_options: as in ``train_step``.

    Returns:
      Sums ``loss``, ``top1``, ``top5`` and the ``count`` of real examples, plus the
      named loss's ``eval_sums`` (e.g. a confusion matrix; ``cnn_jax.train.losses``).
    """
    images = as_float_images(batch["image"])
    custom = get_loss(loss)
    extra = {"label": batch["label"]} if custom is not None and custom.label_in_eval else {}
    logits, features = state.apply_fn(state.variables(), images, train=False, **extra)
    n = batch["label"].shape[0]
    mask = batch.get("mask", jnp.ones((n,), jnp.float32)).astype(jnp.float32)
    if custom is None:
        losses = cross_entropy(logits, batch["label"])
        top1 = _topk_correct(logits, batch["label"], 1)
    else:
        losses, top1 = custom.fn(
            logits, features, {**batch, "image": images}, **(loss_options or {})
        )
    scores = custom is None or custom.top5
    top5 = (
        top1 if batch["label"].ndim > 1 or not scores else _topk_correct(logits, batch["label"], 5)
    )
    out = {
        "loss": jnp.sum(losses * mask),
        "top1": jnp.sum(top1 * mask),
        "top5": jnp.sum(top5 * mask),
        "count": jnp.sum(mask),
    }
    if custom is not None and custom.eval_sums is not None:
        out.update(
            custom.eval_sums(
                logits, features, {**batch, "image": images}, mask, **(loss_options or {})
            )
        )
    if axis_name is not None:
        out = lax.psum(out, axis_name)
    return out
