"""Zeiler & Fergus' figure 2: the strongest activations of units and what excites them.

For chosen channels of a layer of a conv/ReLU/max-pool stack
(``cnn_jax.viz.deconvnet``), :func:`top_projections` finds the ``k`` strongest
activations over a data set (:func:`cnn_jax.viz.analysis.top_activations`) and returns,
for each, the image patch the unit sees (its receptive field,
``cnn_jax.viz.stacks.receptive_box``) and the deconvnet projection of that single
activation, cropped to the same box.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.viz.analysis import crop, top_activations
from cnn_jax.viz.deconvnet import Layer, forward, project
from cnn_jax.viz.stacks import receptive_box

__all__ = ["TopProjections", "top_projections"]


class TopProjections(NamedTuple):
    """What :func:`top_projections` returns; the first two axes are (channel, rank).

    Attributes:
      channels: the channels, in the order of the other fields.
      top: ``(C, k, 4)`` rows ``(image, row, col, value)``, strongest first.
      boxes: ``(C, k, 4)`` receptive fields ``(top, left, height, width)`` in pixels.
      patches: ``(C, k, h, w, channels_in)`` the images cut to the boxes (``fill``
        outside the image).
      projections: ``(C, k, h, w, channels_in)`` the deconvnet projections of the single
        activations, cut to the same boxes (0 outside the image).
    """

    channels: tuple[int, ...]
    top: np.ndarray
    boxes: np.ndarray
    patches: np.ndarray
    projections: np.ndarray


def top_projections(
    layers: Sequence[Layer],
    images: np.ndarray,
    layer: str,
    channels: Sequence[int],
    k: int = 9,
    batch_size: int = 256,
    fill: float | None = None,
) -> TopProjections:
    """The ``k`` strongest activations of each channel, their patches and projections.

    Args:
      layers: the stack.
      images: ``(N, H, W, C)`` the data set (as the network sees it).
      layer: the layer's name.
      channels: its channels to show.
      k: activations per channel.
      batch_size: images per forward call.
      fill: the patch value outside the image (default: the images' minimum, the
        background of digits).

    Returns:
      A :class:`TopProjections`.

    Raises:
      ValueError: as :func:`~cnn_jax.viz.analysis.top_activations` and
        :func:`~cnn_jax.viz.deconvnet.forward`.
    """
    layers = list(layers)
    images = np.asarray(images, np.float32)
    act = jax.jit(lambda x: forward(layers, x, upto=layer).outputs[-1])
    chans = tuple(int(c) for c in channels)
    top = top_activations(act, images, chans, k=k, batch_size=batch_size)
    proj = jax.jit(lambda x, s: project(layers, x, layer, signal=s))
    fill = float(images.min()) if fill is None else float(fill)
    boxes, patches, recs = [], [], []
    for ci, ch in enumerate(chans):
        for img, r, c, _ in top[ci]:
            img, r, c = int(img), int(r), int(c)
            x1 = jnp.asarray(images[img : img + 1])
            out = act(x1)
            signal = jnp.zeros(out.shape, out.dtype).at[0, r, c, ch].set(out[0, r, c, ch])
            box = receptive_box(layers, layer, r, c, images.shape[1:3])
            boxes.append(box)
            patches.append(crop(images[img], box, fill))
            recs.append(crop(np.asarray(proj(x1, signal))[0], box, 0.0))
    shape = (len(chans), top.shape[1])
    return TopProjections(
        chans,
        top,
        np.array(boxes).reshape(*shape, 4),
        np.stack(patches).reshape(*shape, *patches[0].shape),
        np.stack(recs).reshape(*shape, *recs[0].shape),
    )
