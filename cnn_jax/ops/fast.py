"""The fast paths: the switch, and the faster derivatives under their historical import path.

The switch (``FAST_PATHS``, ``use_fast_paths``, ``enabled_fast_paths``, the environment
variable ``CNN_JAX_FAST_PATHS`` ...) lives in ``cnn_jax.ops.fast_paths``, whose docstring
says which fast paths exist and how the choice is made; each custom derivative lives
with the op it speeds up:

* ``cnn_jax.ops.conv_fast``: dense and grouped convolutions, and the dispatcher ``conv``;
* ``cnn_jax.ops.depthwise_fast``: depthwise convolutions;
* ``cnn_jax.ops.small_input_fast``: convolutions with 1-3 input channels;
* ``cnn_jax.ops.conv_transpose_fast``: transposed convolutions;
* ``cnn_jax.ops.pool_fast``: the max-pool tangent;
* ``cnn_jax.ops.norm_fast``: training-mode batch normalization;
* ``cnn_jax.ops.fusion``: the stored input and the unfused convolution output;
* ``cnn_jax.ops.geometry``: the ``Geometry`` they take.

This module re-exports the names it has always offered, so that
``cnn_jax.ops.fast.<name>`` keeps working; ``__all__`` lists the switch only.
"""

# The other names are re-exported for ``cnn_jax.ops.fast.<name>`` (not in ``__all__``).
# ruff: noqa: F401
from cnn_jax.ops.conv_fast import (
    PATCHES_BELOW_CHANNELS,
    TAPS_LARGE_IMAGE,
    TAPS_MIN_CHANNEL_PRODUCT,
    conv,
    kernel_grad_by_products,
)
from cnn_jax.ops.conv_transpose_fast import conv_transpose, tiles_output, transpose_kernel
from cnn_jax.ops.depthwise_fast import DEPTHWISE_CHUNK_BYTES, depthwise_chunk
from cnn_jax.ops.fast_paths import (
    CPU_DEFAULT,
    CPU_DEFAULT_YNN,
    ENV_VAR,
    FAST_PATHS,
    enabled_fast_paths,
    fast_path_enabled,
    use_fast_paths,
    ynn_convolutions,
)
from cnn_jax.ops.fusion import YNN_MIN_CHANNELS, keep_input, unfused_conv, ynn_could_take
from cnn_jax.ops.geometry import ConvGeometry, TransposeGeometry, dimension_numbers
from cnn_jax.ops.norm_fast import batch_norm_train
from cnn_jax.ops.pool_fast import MAX_POOL_MIN_CHANNELS, max_pool_fast_applies, max_pool_tangent
from cnn_jax.ops.small_input_fast import (
    SMALL_INPUT_MAX_CHANNELS,
    SMALL_INPUT_MAX_TERMS,
    small_input,
)

__all__ = [
    "CPU_DEFAULT",
    "CPU_DEFAULT_YNN",
    "ENV_VAR",
    "FAST_PATHS",
    "enabled_fast_paths",
    "fast_path_enabled",
    "use_fast_paths",
    "ynn_convolutions",
]
