"""Mapping PyTorch state dicts and Keras weights onto flax variable trees and back.

The models name their submodules after the source framework's modules, so one set of
rules converts every family:

* a module's path (flax module names from the root) gives the PyTorch key prefix
  through ``key_fn`` (by default ``default_torch_key``: ``layer1_0`` -> ``layer1.0``) or
  the Keras layer name (by default the last module name);
* the leaf gives the tensor and its layout. PyTorch: ``kernel`` <- ``weight`` with
  the convolution layout ``(O, I, *spatial)`` moved to ``(*spatial, I, O)`` (a Linear's
  ``(O, I)`` transposed), ``bias`` <- ``bias``, ``scale`` <- ``weight``,
  ``batch_stats/mean`` <- ``running_mean``, ``batch_stats/var`` <- ``running_var``
  (``num_batches_tracked`` is ignored on import and written as 0 on export). Keras
  kernels are already channels-last and are taken as they are, in each layer's
  weight order.

Every mismatch (a key missing on either side, a wrong shape) is collected and
reported at once in a ``WeightMismatchError`` that lists the offending keys.
"""

from cnn_jax.weights.convert_keras import default_keras_key, from_keras
from cnn_jax.weights.convert_torch import default_torch_key, from_torch, permute_flatten, to_torch
from cnn_jax.weights.spec import WeightMismatchError, WeightSpec

__all__ = [
    "WeightMismatchError",
    "WeightSpec",
    "default_keras_key",
    "default_torch_key",
    "from_keras",
    "from_torch",
    "permute_flatten",
    "to_torch",
]
