"""Seeing inside CNNs: taps, filters, feature maps, deconvnet, saliency, occlusion, curves.

The computations (``taps``, ``deconvnet``, ``stacks``, ``attribution``, ``topk``,
``confusion``, ``curves``) need only JAX and numpy; the figures (``cnn_jax.viz.plots``)
need matplotlib, the ``viz`` extra (``pip install "cnn_jax[viz]"``), imported only when
a figure is drawn.
"""

from cnn_jax.models.intermediates import tap, tap_names
from cnn_jax.viz import plots
from cnn_jax.viz.analysis import confusion_matrix, crop, read_metrics, top_activations
from cnn_jax.viz.attribution import occlusion, occlusion_positions, saliency
from cnn_jax.viz.deconvnet import (
    LRN,
    Conv,
    MaxPool,
    ReLU,
    Trace,
    backward,
    forward,
    project,
    select,
)
from cnn_jax.viz.stacks import deconv_stack, receptive_box
from cnn_jax.viz.topk import TopProjections, top_projections

__all__ = [
    "LRN",
    "Conv",
    "MaxPool",
    "ReLU",
    "TopProjections",
    "Trace",
    "backward",
    "confusion_matrix",
    "crop",
    "deconv_stack",
    "forward",
    "occlusion",
    "occlusion_positions",
    "plots",
    "project",
    "read_metrics",
    "receptive_box",
    "saliency",
    "select",
    "tap",
    "tap_names",
    "top_activations",
    "top_projections",
]
