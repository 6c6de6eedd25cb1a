"""Devices and processes: placing the state and batches (jit or pmap), SIGTERM, agreement."""

from __future__ import annotations

import functools
import signal
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cnn_jax import data as data_lib

__all__ = ["Parallel", "Preemption", "agreed"]


class Preemption:
    """Turns SIGTERM into a flag checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del signum, frame
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class Parallel:
    """Places the state and batches on devices and compiles the steps, jit or pmap.

    Args:
      mode: ``'jit'`` (one mesh over every device, the batch sharded) or ``'pmap'``.
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.local = jax.local_device_count()
        if mode == "jit":
            self.mesh = Mesh(np.array(jax.devices()), ("data",))
            self.replicated = NamedSharding(self.mesh, P())
            self.batch_sharding = NamedSharding(self.mesh, P("data"))

    def replicate(self, tree: Any) -> Any:
        """A host or device tree (the state, the plateau state) copied to every device."""
        if self.mode == "jit":
            return jax.device_put(tree, self.replicated)
        n = self.local
        # From the host: a restored state is committed to one device, which pmap refuses.
        tree = jax.device_get(tree)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), tree)

    def unreplicate(self, tree: Any) -> Any:
        """One copy of a replicated device tree (still on the device).

        The copy is the first local device's buffer, taken without running a program
        over all devices (an eager ``x[0]`` would be one, with its collectives).
        """
        if self.mode == "jit":
            return tree
        return jax.tree.map(_first_copy, tree)

    def batches(self, iterator: Any) -> Any:
        """Device batches, the next ones' host-to-device copies in flight (jit mode)."""
        if self.mode == "jit":
            return data_lib.prefetch_to_device(iterator, 2, self.batch_sharding)
        return (self.batch(b) for b in iterator)

    def batch(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """This process' part of a global batch, as the compiled steps take it."""
        if self.mode == "jit":
            return {
                k: jax.make_array_from_process_local_data(self.batch_sharding, v)
                for k, v in batch.items()
            }
        return {k: v.reshape(self.local, -1, *v.shape[1:]) for k, v in batch.items()}

    def compile_train(self, fn: Any) -> Any:
        """The train step compiled for the mode, its state argument donated."""
        if self.mode == "jit":
            return jax.jit(fn, donate_argnums=0)
        return jax.pmap(
            functools.partial(fn, axis_name="batch"), axis_name="batch", donate_argnums=0
        )

    def compile_eval(self, fn: Any) -> Any:
        """The eval step compiled for the mode."""
        if self.mode == "jit":
            return jax.jit(fn)
        return jax.pmap(functools.partial(fn, axis_name="batch"), axis_name="batch")

    def host(self, tree: Any) -> Any:
        """One copy of a device tree, as numpy arrays."""
        tree = jax.device_get(tree)
        if self.mode == "pmap":
            tree = jax.tree.map(lambda x: x[0], tree)
        return tree


def _first_copy(x: Any) -> Any:
    """The first local device's copy of a pmap-replicated leaf."""
    # Spread over the devices, the first buffer holds copy 0 (leading axis 1); on one
    # device (replicated but not yet through pmap) it holds them all.
    return (x.addressable_data(0) if isinstance(x, jax.Array) else x)[0]


def agreed(flag: bool, process_count: int, sync: bool) -> bool:
    """A preemption flag all processes agree on (any of them), exchanged at ``sync`` steps.

    Every process runs the same steps, so all reach the same sync points; without this,
    a process that saw SIGTERM would enter the (collective) checkpoint save alone.
    """
    if process_count == 1:
        return flag
    if not sync:
        return False
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
