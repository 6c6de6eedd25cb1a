"""Batches onto devices: a batch-axis sharding and asynchronous prefetch."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnn_jax.ops._validate import is_int

__all__ = ["data_sharding", "prefetch_to_device"]


def data_sharding(mesh: Mesh | None = None, axis: str = "data") -> NamedSharding:
    """A sharding that splits the batch axis over a mesh axis.

    Args:
      mesh: the device mesh (default: a 1-D mesh over all devices, axis ``axis``).
      axis: the mesh axis for the batch.

    Returns:
      ``NamedSharding(mesh, PartitionSpec(axis))``.

    Raises:
      ValueError: if ``axis`` is not an axis of ``mesh``.
    """
    if mesh is None:
        mesh = Mesh(np.array(jax.devices()), (axis,))
    if axis not in mesh.axis_names:
        raise ValueError(f"`axis` (={axis!r}) is not an axis of the mesh {mesh.axis_names}")
    return NamedSharding(mesh, PartitionSpec(axis))


def prefetch_to_device(
    iterator: Iterable[Any], size: int = 2, sharding: jax.sharding.Sharding | None = None
) -> Iterator[Any]:
    """Keeps ``size`` batches in flight on the device(s) ahead of the consumer.

    ``jax.device_put`` is asynchronous, so the host-to-device copies of the next batches
    overlap with the computation on the current one.

    Args:
      iterator: batches (pytrees of numpy arrays).
      size: how many batches to keep on the device, at least 1.
      sharding: where to put them, e.g. :func:`data_sharding` to split the batch axis
        over the devices; ``None`` puts them on the default device. In multi-process
        runs each process' batch is its local part of the global batch
        (``jax.make_array_from_process_local_data``).

    Yields:
      The batches, as ``jax.Array`` pytrees.

    Raises:
      ValueError: if ``size`` is not a positive int.
    """
    if not is_int(size) or size < 1:
        raise ValueError(f"`size` (={size!r}) must be a positive int")

    def put(batch: Any) -> Any:
        if sharding is None:
            return jax.device_put(batch)
        if jax.process_count() > 1:  # pragma: no cover - multi-host only
            return jax.tree.map(
                lambda x: jax.make_array_from_process_local_data(sharding, x), batch
            )
        return jax.device_put(batch, sharding)

    queue: collections.deque = collections.deque()
    it = iter(iterator)
    for batch in it:
        queue.append(put(batch))
        if len(queue) >= size:
            break
    while queue:
        yield queue.popleft()
        for batch in it:
            queue.append(put(batch))
            break
