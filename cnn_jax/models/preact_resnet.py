"""Pre-activation bottleneck ResNets for CIFAR-10: ResNet-164 and ResNet-1001.

"Identity Mappings in Deep Residual Networks" (He, Zhang, Ren & Sun, ECCV 2016,
arXiv:1603.05027), the CIFAR networks of its Table 2 and Figure 1: a 3x3 convolution
to 16 channels; three stages of ``n`` pre-activation bottleneck units with 16, 32, 64
bottleneck channels (outputs 64, 128, 256), the first unit of stages 2 and 3 striding
by 2 (depth ``9n + 2``: ``n = 18`` is ResNet-164, ``n = 111`` ResNet-1001); a final
batch norm and ReLU, global average pooling and a linear classifier.

A unit is ``x + conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x)))))))))`` (1x1, 3x3,
1x1; the full pre-activation of the paper's Figure 4(e)). Where the shape changes
(the first unit of each stage) the shortcut is a 1x1 convolution of the
pre-activated input ``relu(bn1(x))``, as in the paper, whose first unit takes its
activation "right after conv1 and before splitting into two paths" (section 4.1).
The stride sits in the 3x3 convolution (as torchvision's bottleneck); its place does
not change the parameter count. Convolutions have no bias. Parameters (10 classes):
1,703,258 for ResNet-164 and 10,327,706 for ResNet-1001, of which 1,679,024 and
10,178,480 are convolution and classifier weights (the rest batch-norm scales and
offsets): the paper's 1.7M and 10.2M match the weights (10.3M with batch norm).
Initialization is ``ResNetCifar``'s (torchvision's conventions).

The ``n - 1`` identical units of a stage run through ``nn.scan`` (``scan=True``, the
default): the network is traced and compiled once per stage instead of once per
unit, so ResNet-1001 compiles in seconds; ``remat=True`` also recomputes each unit's
activations in the backward pass instead of storing them (``nn.remat``), trading
compute for memory. Their parameters are stacked along a leading axis in
``layer{i}_rest``; ``scan=False`` builds the same network unrolled (``layer{i}_1`` ..
``layer{i}_{n-1}``), the same function for the stacked weights
(``stack_unrolled``). The scanned stages are traced inside
``cnn_jax.ops.loop_body``: on the CPU (fast path ``'loop_conv'``) their convolutions'
derivatives are canonical convolutions, which XLA:CPU keeps on its fast kernels inside
the loop (``cnn_jax.ops.loop_conv``); that path is reverse mode only, so forward-mode
differentiation (``jax.jvp``) of a scanned net needs ``scan=False`` or
``cnn_jax.ops.use_fast_paths`` without ``'loop_conv'``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.models._common import (
    TORCH_CONV_INIT_FAN_OUT,
    Array,
    ModuleDef,
    check_images,
    check_positive_int,
    check_positive_ints,
    torch_linear,
)
from cnn_jax.models.plain_cifar import cifar_stage_size
from cnn_jax.ops import loop_body

__all__ = [
    "PreActResNet164",
    "PreActResNet1001",
    "PreActResNetCifar",
    "PreActUnit",
    "stack_unrolled",
]


class PreActUnit(nn.Module):
    """A full pre-activation bottleneck unit (He et al. 2016, Figure 4(e)).

    Attributes:
      filters: bottleneck channels (output ``4 * filters``).
      strides: stride of the 3x3 convolution and of the shortcut.
      project: shortcut through a 1x1 convolution of ``relu(bn1(x))`` (``shortcut``);
        else the identity (then ``strides`` must be 1 and the channels ``4 * filters``).
      conv: the convolution (bias and init bound by the model).
      norm: the normalization.
      act: the activation.
    """

    filters: int
    strides: int = 1
    project: bool = False
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the unit.

        Args:
          x: ``(N, H, W, C)``.
          train: batch statistics in training mode.

        Returns:
          ``(N, H / strides, W / strides, 4 * filters)``.
        """
        out, s = 4 * self.filters, self.strides
        pre = self.act(self.norm(name="bn1")(x, train=train))
        shortcut = (
            self.conv(out, 1, strides=s, padding=0, name="shortcut")(pre) if self.project else x
        )
        y = self.conv(self.filters, 1, padding=0, name="conv1")(pre)
        y = self.act(self.norm(name="bn2")(y, train=train))
        y = self.conv(self.filters, 3, strides=s, padding=1, name="conv2")(y)
        y = self.act(self.norm(name="bn3")(y, train=train))
        y = self.conv(out, 1, padding=0, name="conv3")(y)
        return shortcut + y


class _ScanUnit(nn.Module):
    """``PreActUnit`` as a scan body: ``(carry, _) -> (unit(carry), None)``."""

    filters: int
    train: bool
    conv: ModuleDef
    norm: ModuleDef
    act: Callable[[Array], Array]

    @nn.compact
    def __call__(self, x: Array, _: Any) -> tuple[Array, None]:
        unit = PreActUnit(self.filters, conv=self.conv, norm=self.norm, act=self.act, name="unit")
        return unit(x, train=self.train), None


class PreActResNetCifar(nn.Module):
    """Pre-activation bottleneck ResNet for CIFAR-10 (module docstring), depth ``9n + 2``.

    Attributes:
      depth: ``9n + 2`` (164, 1001, ...).
      widths: bottleneck channels of the stages (16, 32, 64 in the paper).
      num_classes: output classes.
      scan: run the identical units of each stage through ``nn.scan``.
      remat: recompute each unit in the backward pass (``nn.remat``; with ``scan`` or
        unrolled).
      conv: the convolution (a ``Conv``-like partial).
      norm: the normalization (a ``BatchNorm``-like partial, called with ``train``).
      act: the activation.
      dtype: computation dtype.
    """

    depth: int = 164
    widths: Sequence[int] = (16, 32, 64)
    num_classes: int = 10
    scan: bool = True
    remat: bool = False
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Callable[[Array], Array] = nn.relu
    dtype: Any = None

    def __post_init__(self) -> None:
        cifar_stage_size(self.depth, per_block=3)
        check_positive_ints(self.widths, "widths")
        check_positive_int(self.num_classes, "num_classes")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Runs the network.

        Args:
          x: ``(N, 32, 32, C)`` images (any size works).
          train: batch statistics in training mode.

        Returns:
          ``(logits, features)``: features ``stem``, ``layer1`` .. ``layer3`` (before the
          final activation), ``post`` (after it) and ``pre_logits``.

        Raises:
          ValueError: for an input that is not ``(N, H, W, C)``.
        """
        check_images(x, "PreActResNetCifar")
        n = cifar_stage_size(self.depth, per_block=3)
        conv = functools.partial(
            self.conv, use_bias=False, kernel_init=TORCH_CONV_INIT_FAN_OUT, dtype=self.dtype
        )
        norm = functools.partial(self.norm, dtype=self.dtype)
        widths = tuple(self.widths)
        unit_cls = nn.remat(PreActUnit, static_argnums=(2,)) if self.remat else PreActUnit
        features: dict[str, Array] = {}
        h = conv(widths[0], 3, padding=1, name="conv1")(x)
        features["stem"] = h
        for i, w in enumerate(widths):
            stride = 2 if i > 0 else 1
            common = {"conv": conv, "norm": norm, "act": self.act}
            h = unit_cls(w, stride, True, **common, name=f"layer{i + 1}_0")(h, train)
            if self.scan and n > 1:
                body = nn.remat(_ScanUnit, prevent_cse=False) if self.remat else _ScanUnit
                stage = nn.scan(
                    body,
                    variable_axes={"params": 0, "batch_stats": 0},
                    split_rngs={"params": True},
                    length=n - 1,
                )
                with loop_body():  # the body's kernel gradients stay fast in the loop
                    h, _ = stage(w, train, **common, name=f"layer{i + 1}_rest")(h, None)
            else:
                for j in range(1, n):
                    h = unit_cls(w, 1, False, **common, name=f"layer{i + 1}_{j}")(h, train)
            features[f"layer{i + 1}"] = h
        h = self.act(norm(name="bn_final")(h, train=train))
        features["post"] = h
        h = ops.global_avg_pool(h)
        features["pre_logits"] = h
        logits = torch_linear(self.num_classes, h.shape[-1], self.dtype, name="fc")(h)
        return logits, features


def stack_unrolled(variables: Mapping[str, Any], depth: int) -> dict[str, Any]:
    """The variables of ``scan=False`` rearranged for ``scan=True`` (same function).

    Args:
      variables: variables of ``PreActResNetCifar(depth, scan=False)``.
      depth: the network's depth.

    Returns:
      The variables with ``layer{i}_1`` .. ``layer{i}_{n-1}`` stacked along a new leading
      axis into ``layer{i}_rest`` / ``unit``.
    """
    n = cifar_stage_size(depth, per_block=3)
    out: dict[str, Any] = {}
    for collection, tree in variables.items():
        tree = dict(tree)
        stages = sorted({int(m[1]) for k in tree if (m := re.fullmatch(r"layer(\d+)_0", k))})
        for i in stages:
            rest = [tree.pop(f"layer{i}_{j}") for j in range(1, n) if f"layer{i}_{j}" in tree]
            if rest:
                stacked = jax.tree.map(lambda *a: jnp.stack(a), *rest)
                tree[f"layer{i}_rest"] = {"unit": stacked}
        out[collection] = tree
    return out


PreActResNet164 = functools.partial(PreActResNetCifar, depth=164)
PreActResNet1001 = functools.partial(PreActResNetCifar, depth=1001)
