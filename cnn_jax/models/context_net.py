"""Yu & Koltun (2016)'s context aggregation module on a small dense front end.

:class:`ContextModule` is the paper's *basic* context module: seven 3x3 convolutions
with dilations 1, 1, 2, 4, 8, 16, 1, each keeping the ``C`` channels of its input and
followed by a ReLU, then a 1x1 convolution ``C -> C`` (layer 8, no ReLU). With zero
padding ('SAME') the resolution never changes; the receptive field of layer ``i`` is
``3, 5, 9, 17, 33, 65, 67, 67`` pixels: it grows exponentially with the depth while
the parameters grow linearly (``64 C^2`` weights, plus ``8 C`` biases). Every kernel
starts as the identity (the paper's identity initialization, ``k(t, a) = 1[t = 0]
1[a = b]``; :func:`cnn_jax.layers.initializers.identity`) and every bias at zero, so
the untrained module passes its (non-negative) input through unchanged.

:class:`DilatedNet` puts the module on a front end that predicts ``C = num_classes``
score maps: ``len(frontend)`` blocks of two 3x3 convolutions + ReLU, the first
``num_pools`` of them followed by a 2x2 max pool, a 1x1 classifier, the context module
on the scores, and bilinear upsampling back to the input size. The paper's front end
is VGG-16 with its last two pools removed (and the layers after them dilated) at
ImageNet width; ``frontend`` sets the widths of this small one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from cnn_jax import ops
from cnn_jax.layers import Conv
from cnn_jax.models._common import Array, check_images, check_positive_int, check_positive_ints

__all__ = ["CONTEXT_DILATIONS", "ContextModule", "DilatedNet", "context_layers"]

#: The basic module's dilations, layers 1-7 (layer 8 is a 1x1 convolution).
CONTEXT_DILATIONS: tuple[int, ...] = (1, 1, 2, 4, 8, 16, 1)


def context_layers(dilations: Sequence[int] = CONTEXT_DILATIONS) -> list[dict[str, Any]]:
    """The module's layers for ``cnn_jax.ops.receptive_field``: 3x3 dilated, then 1x1.

    Args:
      dilations: the dilations of the 3x3 layers.

    Returns:
      One ``dict(kernel=..., dilation=...)`` per layer.
    """
    dilations = check_positive_ints(dilations, "dilations")
    return [dict(kernel=3, dilation=d) for d in dilations] + [dict(kernel=1)]


class ContextModule(nn.Module):
    """The basic context aggregation module (see the module docstring).

    Attributes:
      dilations: dilations of the 3x3 layers (the paper's by default).
      identity_init: the paper's identity initialization; False: ``lecun_normal``.
      dtype: computation dtype.
    """

    dilations: Sequence[int] = CONTEXT_DILATIONS
    identity_init: bool = True
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_ints(self.dilations, "dilations")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Aggregates context over ``x`` ``(N, H, W, C)``; returns ``(N, H, W, C)``."""
        check_images(x, "ContextModule")
        c = x.shape[-1]
        init = "identity" if self.identity_init else "lecun_normal"
        for i, d in enumerate(self.dilations):
            x = Conv(c, 3, dilation=d, kernel_init=init, dtype=self.dtype, name=f"ctx{i + 1}")(x)
            x = nn.relu(x)
        return Conv(c, 1, kernel_init=init, dtype=self.dtype, name=f"ctx{len(self.dilations) + 1}")(
            x
        )


class DilatedNet(nn.Module):
    """A dense front end, the context module, and bilinear upsampling to the input size.

    Attributes:
      num_classes: output classes (the context module's ``C``).
      frontend: widths of the front end's blocks (two 3x3 conv + ReLU each).
      num_pools: how many of the first blocks end with a 2x2 max pool (the output
        stride is ``2 ** num_pools``; the input size must be divisible by it).
      dilations: the context module's dilations.
      use_context: False drops the context module (the front-end-only baseline).
      dtype: computation dtype.
    """

    num_classes: int = 21
    frontend: Sequence[int] = (32, 64, 128)
    num_pools: int = 2
    dilations: Sequence[int] = CONTEXT_DILATIONS
    use_context: bool = True
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        widths = check_positive_ints(self.frontend, "frontend")
        if not (isinstance(self.num_pools, int) and 0 <= self.num_pools <= len(widths)):
            raise ValueError(
                f"`num_pools` (={self.num_pools!r}) must be an int in [0, {len(widths)}] "
                "(at most one pool per front-end block)"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Dense class scores for every pixel.

        Args:
          x: ``(N, H, W, C)`` images; ``H`` and ``W`` divisible by ``2 ** num_pools``.
          train: unused (no dropout or batch norm); kept for the common model API.

        Returns:
          ``(logits, features)``: logits ``(N, H, W, num_classes)``; features
          ``frontend_scores`` (before the context module) and ``context_scores`` (after
          it), both at the reduced resolution.

        Raises:
          ValueError: for a wrong input rank or a size not divisible by the stride.
        """
        del train
        n, h, w, _ = check_images(x, "DilatedNet")
        stride = 2**self.num_pools
        for name, size in (("height", h), ("width", w)):
            if size % stride:
                lo = size // stride * stride
                near = [s for s in (lo, lo + stride) if s > 0]
                raise ValueError(
                    f"DilatedNet with num_pools={self.num_pools} needs `x` {name} divisible "
                    f"by {stride}, got {size} (shape {tuple(x.shape)}); nearest valid: {near}"
                )
        f: dict[str, Array] = {}
        for i, width in enumerate(self.frontend):
            for j in range(2):
                x = nn.relu(Conv(width, 3, dtype=self.dtype, name=f"conv{i + 1}_{j + 1}")(x))
            if i < self.num_pools:
                x = ops.max_pool(x, 2)
        f["frontend_scores"] = x = Conv(self.num_classes, 1, dtype=self.dtype, name="score")(x)
        if self.use_context:
            x = ContextModule(self.dilations, dtype=self.dtype, name="context")(x)
        f["context_scores"] = x
        logits = jax.image.resize(x, (n, h, w, x.shape[-1]), "bilinear").astype(x.dtype)
        f["logits"] = logits
        return logits, f
