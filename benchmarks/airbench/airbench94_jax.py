"""airbench94 in JAX/flax/optax: the recipe of ``airbench94.py``, the whole run on device.

The recipe (network, initialization, optimizer, schedule, lookahead, augmentation,
test-time augmentation) is the one described in
:mod:`benchmarks.airbench.airbench94_torch`, from Jordan (2024), "94% on CIFAR-10 in
3.29 seconds on a single GPU" (arXiv:2404.00498). Here it is written with
``cnn_jax.layers`` (``Conv``, ``BatchNorm``) in channels-last layout:

* The network is :class:`AirbenchNet`; its module names (``whiten``, ``group1..3`` with
  ``conv1/norm1/conv2/norm2``, ``head``) mirror the PyTorch reference's, so that
  ``cnn_jax.weights``' default key rule maps its weights. BatchNorms keep a ``scale``
  parameter, frozen at 1 as in the reference (never passed to the optimizer), so the
  parameter count is the reference's (1,972,792). Computation runs in ``dtype``
  (float16 by default, as the reference) with float32 parameters, float32 BatchNorm
  statistics, float32 GELU (the reference's half GELU computes internally in float32)
  and a float32 loss.
* Optimizer: ``optax`` Nesterov SGD in PyTorch's form (weight decay added to the
  gradient, then ``trace(nesterov=True)``, then ``-lr * factor[step]``), with the two
  learning-rate groups; the whitening kernel and the BatchNorm scales are not trained,
  the whitening bias only during the first ``whiten_bias_epochs`` epochs.
* The lookahead EMA covers the trainable parameters and the BatchNorm statistics and is
  applied with ``jnp.where`` inside the compiled step (no host round trip).

Everything of a run is on the device: the uint8 images are put there once; the
normalization, the random flip, the reflect padding (once per run), the per-epoch
permutation and crop offsets, the per-batch gather, crop and alternating flip, the
training steps and the TTA evaluation are compiled XLA programs. Two ways to run the
steps of an epoch (``loop``), which give bit-identical runs:

* ``'step'`` (default): one jitted step (state donated) called from Python, plus small
  begin/end-of-epoch programs. Dispatch is asynchronous, so on a GPU it costs nothing
  as long as a step (milliseconds here) is longer than its dispatch (well under one).
* ``'scan'``: one program per epoch, ``lax.scan`` over its steps, the state donated: no
  per-step dispatch at all; 2 compiled variants (full epoch and the shorter last one).

The default, ``'step'``, was the faster of the two on XLA:CPU (docs/ENGINEERING.md,
"CPU tuning"). On a GPU compare both in one job (``run.py --jax_loop=step,scan``).

Every program is compiled ahead of time (``jit(...).lower(...).compile()``) in
:meth:`JaxAirbench.compile`, whose duration is reported separately; runs then only
execute compiled programs, and the timed parts end with ``jax.block_until_ready``.

Speed options (all compute the same function; the tests check they agree):
``pool='reshape'`` (non-overlapping max pooling as a reshape and a max: its gradient is an
elementwise mask that XLA fuses), ``'lax'`` (``lax.reduce_window``, gradient by
``select_and_scatter_add``) or ``'cnn_jax'`` (``cnn_jax.ops.max_pool``, gradient
gathered at PyTorch's arg-max; fast on CPU); ``bn='cnn_jax'``
(``cnn_jax.layers.BatchNorm``, two-pass variance) or ``'onepass'`` (``E[x^2] - E[x]^2``:
both sums in one pass over the activation).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from benchmarks.airbench import Recipe
from benchmarks.airbench.jax_net import (
    DTYPES,
    NORMS,
    POOLS,
    AirbenchNet,
    ConvGroup,
    JaxOptions,
    OnePassBatchNorm,
    TrainState,
    dirac_init,
    exact_gelu,
    make_optimizer,
    max_pool_cnn_jax,
    max_pool_lax,
    max_pool_reshape,
    merge_params,
    normalize,
    split_params,
    whitening_kernel,
)

__all__ = [
    "DTYPES",
    "NORMS",
    "POOLS",
    "AirbenchNet",
    "ConvGroup",
    "JaxAirbench",
    "JaxOptions",
    "OnePassBatchNorm",
    "TrainState",
    "dirac_init",
    "exact_gelu",
    "make_optimizer",
    "max_pool_cnn_jax",
    "max_pool_lax",
    "max_pool_reshape",
    "merge_params",
    "normalize",
    "split_params",
    "whitening_kernel",
]

Array = Any
PyTree = Any


class JaxAirbench:
    """One process's JAX airbench94: data on the device, compiled programs, runs by seed.

    Args:
      train: ``(images uint8 (N, 32, 32, 3), labels int)``.
      test: the same for the test set.
      recipe: the hyperparameters.
      options: how to run (:class:`JaxOptions`).
      device: the JAX device (default: the first one).
    """

    def __init__(
        self,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        recipe: Recipe | None = None,
        options: JaxOptions | None = None,
        device: Any = None,
    ) -> None:
        self.recipe = r = recipe or Recipe()
        self.options = options or JaxOptions()
        self.device = device or jax.devices()[0]
        self.dtype = DTYPES[self.options.dtype]
        put = functools.partial(jax.device_put, device=self.device)
        self.train_images = put(np.asarray(train[0], np.uint8))
        self.train_labels = put(np.asarray(train[1], np.int32))
        self.test_images = put(np.asarray(test[0], np.uint8))
        self.test_labels = put(np.asarray(test[1], np.int32))
        self.num_train = len(train[0])
        self.steps_per_epoch = r.steps_per_epoch(self.num_train)
        self.total_steps = r.total_steps(self.num_train)
        self.epoch_steps = r.epoch_steps(self.num_train)
        self.model = AirbenchNet(
            widths=tuple(r.widths),
            whiten_kernel_size=r.whiten_kernel_size,
            scaling_factor=r.scaling_factor,
            batchnorm_momentum=r.batchnorm_momentum,
            batchnorm_eps=r.batchnorm_eps,
            norm=NORMS[self.options.bn],
            pool=POOLS[self.options.pool],
            dtype=self.dtype,
        )
        self.tx = make_optimizer(r, self.total_steps)
        self.compiled: dict[str, Any] = {}
        self.compile_times: dict[str, float] = {}

    def key(self, seed: int) -> Array:
        """A PRNG key of the configured implementation."""
        return jax.random.key(seed, impl=self.options.prng)

    # -- pure functions (jitted in `compile`) ------------------------------------------

    def init_state(self, key: Array) -> TrainState:
        """A fresh network and optimizer state (the whitening kernel still random)."""
        x = jnp.zeros((1, 32, 32, 3), self.dtype)
        variables = self.model.init(key, x, train=False)
        trainable, frozen = split_params(variables["params"])
        stats = variables["batch_stats"]
        return TrainState(
            trainable=trainable,
            frozen=frozen,
            batch_stats=stats,
            opt_state=self.tx.init(trainable),
            ema={"trainable": trainable, "batch_stats": stats},
            ema_on=jnp.zeros((), bool),
            step=jnp.zeros((), jnp.int32),
        )

    def whiten(self, state: TrainState, train_images: Array) -> TrainState:
        """Sets the whitening kernel from the first ``whiten_samples`` training images."""
        r = self.recipe
        x = normalize(train_images[: r.whiten_samples], self.dtype)
        kernel = whitening_kernel(x, r.whiten_kernel_size, r.whiten_eps)
        frozen = {**state.frozen, "whiten": {**state.frozen["whiten"], "kernel": kernel}}
        return state._replace(frozen=frozen)

    def prepare(self, train_images: Array, key: Array) -> Array:
        """Normalized, randomly flipped (once per run) and reflect-padded training images."""
        r = self.recipe
        x = normalize(train_images, self.dtype)
        if r.flip:
            mask = jax.random.uniform(key, (x.shape[0],)) < 0.5
            x = jnp.where(mask[:, None, None, None], x[:, :, ::-1, :], x)
        if r.translate > 0:
            t = r.translate
            x = jnp.pad(x, ((0, 0), (t, t), (t, t), (0, 0)), mode="reflect")
        return x

    def epoch_randomness(self, key: Array) -> tuple[Array, Array]:
        """This epoch's order (the first ``steps * batch`` of a permutation) and offsets."""
        k_perm, k_shift = jax.random.split(key)
        used = self.steps_per_epoch * self.recipe.batch_size
        order = jax.random.permutation(k_perm, self.num_train)[:used].astype(jnp.int32)
        span = 2 * self.recipe.translate + 1
        shifts = jax.random.randint(k_shift, (self.num_train, 2), 0, span, jnp.int32)
        return order, shifts

    def get_batch(
        self, padded: Array, labels: Array, order: Array, shifts: Array, epoch: Array, i: Array
    ) -> tuple[Array, Array]:
        """Batch ``i``: gathered, cropped at its images' offsets, flipped on odd epochs."""
        r = self.recipe
        bs = r.batch_size
        idx = lax.dynamic_slice_in_dim(order, i * bs, bs)
        x = jnp.take(padded, idx, axis=0)
        if r.translate > 0:
            size = padded.shape[1] - 2 * r.translate
            s = jnp.take(shifts, idx, axis=0)

            def crop(img: Array, off: Array) -> Array:
                return lax.dynamic_slice(img, (off[0], off[1], 0), (size, size, img.shape[-1]))

            x = jax.vmap(crop)(x, s)
        if r.flip:
            x = jnp.where(epoch % 2 == 1, x[:, :, ::-1, :], x)
        return x, jnp.take(labels, idx, axis=0)

    def loss_fn(
        self, trainable: PyTree, frozen: PyTree, stats: PyTree, x: Array, y: Array
    ) -> tuple[Array, tuple[PyTree, Array]]:
        """Summed label-smoothed cross-entropy (float32), new BN statistics, logits."""
        variables = {"params": merge_params(trainable, frozen), "batch_stats": stats}
        (logits, _), updates = self.model.apply(variables, x, train=True, mutable=["batch_stats"])
        eps = self.recipe.label_smoothing
        targets = jax.nn.one_hot(y, logits.shape[-1]) * (1 - eps) + eps / logits.shape[-1]
        loss = optax.softmax_cross_entropy(logits, targets).sum()
        return loss, (updates["batch_stats"], logits)

    def train_step(
        self, state: TrainState, x: Array, y: Array, epoch: Array
    ) -> tuple[TrainState, dict[str, Array]]:
        """One SGD step, then the lookahead update when due."""
        r = self.recipe
        grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
        (loss, (stats, logits)), grads = grad_fn(
            state.trainable, state.frozen, state.batch_stats, x, y
        )
        updates, opt_state = self.tx.update(grads, state.opt_state, state.trainable)
        gate = (epoch < r.whiten_bias_epochs).astype(jnp.float32)
        whiten = {**updates["whiten"], "bias": updates["whiten"]["bias"] * gate}
        trainable = optax.apply_updates(state.trainable, {**updates, "whiten": whiten})
        step = state.step + 1

        # Lookahead: from epoch `ema_start_epochs`, every n steps: e <- rho e + (1 - rho) p,
        # p <- e; the first time only starts the EMA (rho = 0).
        due = (epoch >= r.ema_start_epochs) & (step % r.ema_every_n_steps == 0)
        base = r.ema_decay_base**r.ema_every_n_steps
        frac = step.astype(jnp.float32) / self.total_steps
        rho = jnp.where(state.ema_on, base * frac**r.ema_decay_pow, 0.0)
        current = {"trainable": trainable, "batch_stats": stats}
        ema = jax.tree.map(
            lambda e, p: jnp.where(due, rho * e + (1 - rho) * p, e), state.ema, current
        )
        current = jax.tree.map(lambda e, p: jnp.where(due, e, p), ema, current)
        new_state = TrainState(
            trainable=current["trainable"],
            frozen=state.frozen,
            batch_stats=current["batch_stats"],
            opt_state=opt_state,
            ema=ema,
            ema_on=state.ema_on | due,
            step=step,
        )
        accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
        return new_state, {"loss": loss / y.shape[0], "accuracy": accuracy}

    def end_epoch(self, state: TrainState) -> TrainState:
        """The weights and statistics are reset to the EMA at the end of every epoch."""
        cur = {"trainable": state.trainable, "batch_stats": state.batch_stats}
        cur = jax.tree.map(lambda e, p: jnp.where(state.ema_on, e, p), state.ema, cur)
        return state._replace(trainable=cur["trainable"], batch_stats=cur["batch_stats"])

    def train_epoch(
        self,
        state: TrainState,
        padded: Array,
        labels: Array,
        epoch: Array,
        key: Array,
        *,
        num_steps: int,
    ) -> tuple[TrainState, dict[str, Array]]:
        """One epoch of ``num_steps`` steps as a ``lax.scan`` (the ``'scan'`` loop)."""
        order, shifts = self.epoch_randomness(key)

        def body(state: TrainState, i: Array) -> tuple[TrainState, dict[str, Array]]:
            x, y = self.get_batch(padded, labels, order, shifts, epoch, i)
            return self.train_step(state, x, y, epoch)

        state, metrics = lax.scan(body, state, jnp.arange(num_steps, dtype=jnp.int32))
        return self.end_epoch(state), metrics

    def step_program(
        self,
        state: TrainState,
        padded: Array,
        labels: Array,
        order: Array,
        shifts: Array,
        epoch: Array,
        i: Array,
    ) -> tuple[TrainState, dict[str, Array]]:
        """Batch gathering and one step (the ``'step'`` loop)."""
        x, y = self.get_batch(padded, labels, order, shifts, epoch, i)
        return self.train_step(state, x, y, epoch)

    def tta_logits(self, state: TrainState, x: Array, level: int) -> Array:
        """Logits of normalized images averaged over the TTA views of ``level`` (0-2)."""
        variables = {
            "params": merge_params(state.trainable, state.frozen),
            "batch_stats": state.batch_stats,
        }

        def net(z: Array) -> Array:
            return self.model.apply(variables, z, train=False)[0]

        def mirror(z: Array) -> Array:
            return 0.5 * net(z) + 0.5 * net(z[:, :, ::-1, :])

        if level == 0:
            return net(x)
        if level == 1:
            return mirror(x)
        h, w = x.shape[1:3]
        p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        translated = 0.5 * (mirror(p[:, :h, :w]) + mirror(p[:, 2 : h + 2, 2 : w + 2]))
        return 0.5 * mirror(x) + 0.5 * translated

    def evaluate(self, state: TrainState, images: Array, labels: Array, level: int) -> Array:
        """Test accuracy with TTA ``level``, in batches of ``eval_batch_size`` (``lax.map``)."""
        r = self.recipe
        n = images.shape[0]
        bs = min(r.eval_batch_size, n)
        chunks = -(-n // bs)
        x = normalize(images, self.dtype)
        x = jnp.pad(x, ((0, chunks * bs - n), (0, 0), (0, 0), (0, 0)))
        x = x.reshape(chunks, bs, *x.shape[1:])
        fn = functools.partial(self.tta_logits, state, level=level)
        logits = lax.map(fn, x).reshape(chunks * bs, -1)[:n]
        return jnp.mean(jnp.argmax(logits, -1) == labels)

    # -- compilation and runs ---------------------------------------------------------

    def _aot(self, name: str, fn: Callable, *args: Any, donate: tuple[int, ...] = ()) -> Any:
        """``jit(fn).lower(*args).compile()``, timed into ``compile_times``."""
        t0 = time.perf_counter()
        compiled = jax.jit(fn, donate_argnums=donate).lower(*args).compile()
        self.compile_times[name] = time.perf_counter() - t0
        self.compiled[name] = compiled
        return compiled

    def compile(self) -> float:
        """Compiles every program ahead of time; returns the total compile time (s)."""
        key = self.key(0)
        epoch = np.int32(0)
        init = self._aot("init", self.init_state, key)
        state = init(key)
        self._aot("whiten", self.whiten, state, self.train_images)
        prepare = self._aot("prepare", self.prepare, self.train_images, key)
        padded = prepare(self.train_images, key)
        if self.options.loop == "scan":
            for n in sorted(set(self.epoch_steps)):
                fn = functools.partial(self.train_epoch, num_steps=n)
                self._aot(
                    f"epoch{n}", fn, state, padded, self.train_labels, epoch, key, donate=(0,)
                )
        else:
            order, shifts = self._aot("epoch_randomness", self.epoch_randomness, key)(key)
            i = np.int32(0)
            args = (state, padded, self.train_labels, order, shifts, epoch, i)
            self._aot("step", self.step_program, *args, donate=(0,))
            self._aot("end_epoch", self.end_epoch, state, donate=(0,))
        self._compile_eval(self.recipe.tta_level, state)
        return sum(self.compile_times.values())

    def _compile_eval(self, level: int, state: TrainState) -> Any:
        """The evaluation program with TTA ``level`` (compiled once)."""
        name = f"eval_tta{level}"
        if name not in self.compiled:
            fn = functools.partial(self.evaluate, level=level)
            self._aot(name, fn, state, self.test_images, self.test_labels)
        return self.compiled[name]

    def run(
        self,
        seed: int,
        *,
        dummy_labels: bool = False,
        epoch_eval: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """One training run (compiles first if :meth:`compile` was not called).

        Args:
          seed: the run's PRNG seed (init, flips, orders, crops).
          dummy_labels: train on random labels (warm-up).
          epoch_eval: evaluate (untimed, without TTA) after every epoch.
          log: called with a line per epoch when given.

        Returns:
          The same keys as :meth:`TorchAirbench.run
          <benchmarks.airbench.airbench94_torch.TorchAirbench.run>`.
        """
        if not self.compiled:
            self.compile()
        c = self.compiled
        r = self.recipe
        key = self.key(seed)
        k_init, k_flip, k_epochs, k_dummy = jax.random.split(key, 4)
        labels = self.train_labels
        if dummy_labels:
            labels = jax.random.randint(k_dummy, labels.shape, 0, 10, jnp.int32)
        state = jax.block_until_ready(c["init"](k_init))

        t0 = time.perf_counter()
        state = jax.block_until_ready(c["whiten"](state, self.train_images))
        whiten_time = time.perf_counter() - t0

        epoch_times, epoch_accs = [], []
        padded = None
        metrics: dict[str, Array] = {}
        for epoch, num_steps in enumerate(self.epoch_steps):
            e = np.int32(epoch)
            k_epoch = jax.random.fold_in(k_epochs, epoch)
            t0 = time.perf_counter()
            if epoch == 0:
                padded = c["prepare"](self.train_images, k_flip)
            if self.options.loop == "scan":
                state, metrics = c[f"epoch{num_steps}"](state, padded, labels, e, k_epoch)
            else:
                order, shifts = c["epoch_randomness"](k_epoch)
                for i in range(num_steps):
                    state, metrics = c["step"](state, padded, labels, order, shifts, e, np.int32(i))
                state = c["end_epoch"](state)
            jax.block_until_ready(state)
            epoch_times.append(time.perf_counter() - t0)
            if epoch_eval:  # untimed; compiled on first use
                acc = self._compile_eval(0, state)(state, self.test_images, self.test_labels)
                epoch_accs.append(float(acc))
            if log is not None:
                loss = float(np.asarray(metrics["loss"]).reshape(-1)[-1])
                tacc = float(np.asarray(metrics["accuracy"]).reshape(-1)[-1])
                vacc = f" val_acc {epoch_accs[-1]:.4f}" if epoch_eval else ""
                log(
                    f"  jax epoch {epoch} loss {loss:.4f} train_acc {tacc:.4f}{vacc} "
                    f"time {epoch_times[-1]:.3f}s"
                )

        t0 = time.perf_counter()
        accuracy = float(c[f"eval_tta{r.tta_level}"](state, self.test_images, self.test_labels))
        eval_time = time.perf_counter() - t0
        self.last_state = state
        return {
            "accuracy": accuracy,
            "time_s": whiten_time + sum(epoch_times) + eval_time,
            "whiten_time_s": whiten_time,
            "epoch_times_s": epoch_times,
            "eval_time_s": eval_time,
            "train_loss": float(np.asarray(metrics["loss"]).reshape(-1)[-1]),
            "epoch_accuracies": epoch_accs,
            "steps": int(state.step),
        }
