"""Pure functions over ``jax.lax``: convolutions, pooling and their arithmetic.

Channels-last throughout: inputs ``(N, *spatial, C)``, kernels
``(*window, C_in / groups, C_out)``. No flax, no state.
"""

from cnn_jax.ops import padding, shapes
from cnn_jax.ops.conv import (
    PADDING_MODES,
    conv,
    conv_transpose,
    depthwise_conv,
    locally_connected,
    separable_conv,
    tiled_conv,
)
from cnn_jax.ops.shapes import (
    conv_output_size,
    conv_transpose_output_size,
    padding_amounts,
    pool_output_size,
    receptive_field,
)

__all__ = [
    "PADDING_MODES",
    "conv",
    "conv_output_size",
    "conv_transpose",
    "conv_transpose_output_size",
    "depthwise_conv",
    "locally_connected",
    "padding",
    "padding_amounts",
    "pool_output_size",
    "receptive_field",
    "separable_conv",
    "shapes",
    "tiled_conv",
]
