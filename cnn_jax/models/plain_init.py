"""He et al.'s plain CIFAR network with a chosen kernel initialization, with or without BN.

For the initialization study: ``PlainInit`` is ``cnn_jax.models.PlainCifar`` (depth
``6n + 2``: 20 for ``Plain20``) whose every convolution draws its kernel from a named
initializer (``cnn_jax.layers.initializers``: ``zeros``, ``small_random`` with
``init_stddev``, ``glorot_normal``, ``he_normal``, ...) instead of PlainCifar's fixed
He-normal (fan-out), and whose batch normalization can be switched off
(``batch_norm=False``: ``NoNorm``, the identity), which is what makes the
initialization matter: with batch norm every layer's output is re-standardized and
the scale of the kernels hardly matters. The classifier keeps PlainCifar's PyTorch
default ``Linear`` initialization. The parameters are PlainCifar's (minus the batch
norm ones without it): 269,722 with batch norm and 268,346 without, at depth 20.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.layers.initializers import get_initializer
from cnn_jax.models._common import Array, check_positive_int
from cnn_jax.models.plain_cifar import PlainCifar, cifar_stage_size

__all__ = ["NoNorm", "PlainInit"]


class NoNorm(nn.Module):
    """The identity in place of a normalization layer (``norm(name=...)(x, train=...)``).

    Attributes:
      dtype: accepted for the normalization interface; unused.
    """

    dtype: Any = None

    def __call__(self, x: Array, train: bool = False) -> Array:
        """Returns ``x``."""
        del train
        return x


class PlainInit(nn.Module):
    """A plain CIFAR network with a chosen initialization (module docstring).

    Attributes:
      depth: ``6n + 2`` (20, 32, 44, 56, 110).
      kernel_init: the convolutions' initializer name.
      init_stddev: the standard deviation for ``small_random``/``normal`` (ignored
        otherwise).
      batch_norm: keep PlainCifar's batch normalization.
      num_classes: outputs.
      dtype: computation dtype.
    """

    depth: int = 20
    kernel_init: str = "he_normal"
    init_stddev: float = 0.01
    batch_norm: bool = False
    num_classes: int = 10
    dtype: Any = None

    def __post_init__(self) -> None:
        cifar_stage_size(self.depth)
        check_positive_int(self.num_classes, "num_classes")
        self._init()  # a ValueError/TypeError naming an unknown initializer
        super().__post_init__()

    def _init(self) -> Any:
        if self.kernel_init in ("small_random", "normal"):
            return get_initializer(self.kernel_init, stddev=self.init_stddev)
        return get_initializer(self.kernel_init)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network (PlainCifar's ``__call__``; features under the same names).

        Args:
          x: ``(N, H, W, C)`` images.
          train: batch statistics in training mode (with ``batch_norm``).

        Returns:
          ``(logits, features)``.
        """
        init = self._init()

        def conv(*args: Any, kernel_init: Any = None, **kwargs: Any) -> nn.Module:
            del kernel_init  # PlainCifar's; replaced by the chosen one
            return Conv(*args, kernel_init=init, **kwargs)

        n = cifar_stage_size(self.depth)
        net = PlainCifar(
            stage_sizes=(n, n, n),
            num_classes=self.num_classes,
            conv=conv,
            norm=BatchNorm if self.batch_norm else NoNorm,
            dtype=self.dtype,
            name="net",
        )
        return net(x, train)
