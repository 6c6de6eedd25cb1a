"""Measurements of what networks do: equivariance and signal propagation at init.

* ``cnn_jax.analysis.equivariance``: translation equivariance of feature maps (exact
  for convolutions away from the border), its breakdown under rotation and scaling,
  and the translation invariance that pooling adds with depth.
* ``cnn_jax.analysis.signal``: per-layer activation and gradient magnitudes of one
  forward/backward pass, and the re-initialization of a model's kernels by scheme.
"""

from cnn_jax.analysis.equivariance import (
    invariance_change,
    rotate,
    rotation_equivariance_error,
    scale,
    scale_equivariance_error,
    translate,
    translation_equivariance_error,
)
from cnn_jax.analysis.signal import LayerSignal, layer_signals, reinitialize

__all__ = [
    "LayerSignal",
    "invariance_change",
    "layer_signals",
    "reinitialize",
    "rotate",
    "rotation_equivariance_error",
    "scale",
    "scale_equivariance_error",
    "translate",
    "translation_equivariance_error",
]
