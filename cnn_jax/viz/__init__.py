"""Seeing inside CNNs: taps, filters, feature maps, deconvnet, saliency, occlusion, curves.

The computations (``taps``, ``deconvnet``, ``stacks``, ``attribution``, ``topk``,
``confusion``, ``curves``) need only JAX and numpy; the figures (``cnn_jax.viz.plots``)
need matplotlib, the ``viz`` extra (``pip install "cnn_jax[viz]"``), imported only when
a figure is drawn.
"""

from cnn_jax.models.intermediates import tap, tap_names
from cnn_jax.viz.deconvnet import Conv, MaxPool, ReLU, Trace, backward, forward, project, select
from cnn_jax.viz.stacks import deconv_stack, receptive_box

__all__ = [
    "Conv",
    "MaxPool",
    "ReLU",
    "Trace",
    "backward",
    "deconv_stack",
    "forward",
    "project",
    "receptive_box",
    "select",
    "tap",
    "tap_names",
]
