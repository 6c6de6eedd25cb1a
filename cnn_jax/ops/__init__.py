"""Pure functions over ``jax.lax``: convolutions, pooling and their arithmetic.

Channels-last throughout: inputs ``(N, *spatial, C)``, kernels
``(*window, C_in / groups, C_out)``. No flax, no state.

The public ops, by module:

* ``conv``: ``conv``, ``conv_transpose``, ``depthwise_conv``, ``separable_conv``
  (and, from ``conv_local``, ``locally_connected`` and ``tiled_conv``);
* ``pool``: ``max_pool``, ``avg_pool``, ``lp_pool``, ``maxout`` (and, from
  ``pool_indices``, ``pool_adaptive`` and ``pool_stochastic``, the pools with indices,
  the global and adaptive pools and stochastic pooling);
* ``shapes`` and ``padding``: the conv arithmetic (output sizes, padding amounts,
  receptive fields);
* ``fast_paths``: the switch for the faster CPU derivatives (``use_fast_paths``), which
  live with their ops in the ``*_fast`` modules, and ``loop_body``, the mark for code
  traced as a loop's body (``loop_conv``: convolution derivatives XLA:CPU keeps fast
  inside ``lax.scan``); ``geometry``: the one ``Geometry`` type they take. ``fast``
  re-exports both under their former import path;
* ``winograd``: the 3x3 ``'SAME'`` convolution by Winograd's F(4x4, 3x3) and its
  kernel transform (fewer multiplications, float32 rounding about ``1e-5``);
* ``limits``: the size bounds every op checks before building XLA code
  (``MAX_DIMENSION = 2**31 - 1`` positions per dimension, ``MAX_ELEMENTS = 2**40``).
"""

from cnn_jax.ops import fast, limits, padding, shapes
from cnn_jax.ops.conv import (
    PADDING_MODES,
    conv,
    conv_transpose,
    depthwise_conv,
    locally_connected,
    separable_conv,
    tiled_conv,
)
from cnn_jax.ops.fast_paths import FAST_PATHS, enabled_fast_paths, loop_body, use_fast_paths
from cnn_jax.ops.pool import (
    adaptive_avg_pool,
    adaptive_max_pool,
    avg_pool,
    global_avg_pool,
    global_max_pool,
    lp_pool,
    max_pool,
    max_pool_with_indices,
    max_unpool,
    maxout,
    stochastic_pool,
)
from cnn_jax.ops.shapes import (
    conv_output_size,
    conv_transpose_output_size,
    padding_amounts,
    pool_output_size,
    receptive_field,
)
from cnn_jax.ops.winograd import (
    winograd_conv3x3,
    winograd_conv3x3_transformed,
    winograd_kernel,
    winograd_transforms,
)

__all__ = [
    "FAST_PATHS",
    "PADDING_MODES",
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "avg_pool",
    "conv",
    "conv_output_size",
    "conv_transpose",
    "conv_transpose_output_size",
    "depthwise_conv",
    "enabled_fast_paths",
    "fast",
    "global_avg_pool",
    "global_max_pool",
    "limits",
    "locally_connected",
    "loop_body",
    "lp_pool",
    "max_pool",
    "max_pool_with_indices",
    "max_unpool",
    "maxout",
    "padding",
    "padding_amounts",
    "pool_output_size",
    "receptive_field",
    "separable_conv",
    "shapes",
    "stochastic_pool",
    "tiled_conv",
    "use_fast_paths",
    "winograd_conv3x3",
    "winograd_conv3x3_transformed",
    "winograd_kernel",
    "winograd_transforms",
]
