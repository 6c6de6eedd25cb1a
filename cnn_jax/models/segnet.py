"""SegNet (Badrinarayanan et al. 2017): the decoder upsamples with the encoder's indices.

Encoder: VGG-16's 13 convolutional layers (3x3, 'SAME', each followed by batch norm and
ReLU), in five stages of 64, 64 | 128, 128 | 256 x3 | 512 x3 | 512 x3 channels, each
stage ending with a 2x2 max pool of stride 2 that keeps the *indices* of its maxima
(``cnn_jax.ops.max_pool_with_indices``). Decoder: for each stage, in reverse, the
stage's pooled maps are put back where their maxima came from
(``cnn_jax.ops.max_unpool``, zeros elsewhere: a sparse map, no learned upsampling) and
densified by the mirrored convolutions (conv + BN + ReLU); the last convolution of each
decoder stage maps to the previous stage's width (the Caffe ``segnet.prototxt``:
512 x3 | 512, 512, 256 | 256, 256, 128 | 128, 64 | 64, in which the first stage's
second convolution is the classifier): a final 3x3 convolution gives the class
scores (the softmax is the loss's). The encoder has VGG-16's 14.7M convolutional
parameters; the whole network, 29,441,419 for CamVid's 11 classes (convolutions
without biases, each followed by batch norm's scale and shift).

``stages`` sets the widths: the default is the paper's; the digit experiments use
narrower stages. Any input size works: the unpooling puts the maps back at the exact
size that was pooled (odd sizes lose their last row/column to the floor of the pool
and get it back as zeros).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn

from cnn_jax import ops
from cnn_jax.layers import BatchNorm, Conv
from cnn_jax.models._common import Array, ModuleDef, check_images, check_positive_int

__all__ = ["SEGNET_VGG16_STAGES", "SegNet"]

#: VGG-16's convolutional stages (the encoder of the paper).
SEGNET_VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def _check_stages(stages: Any) -> tuple[tuple[int, ...], ...]:
    ok = isinstance(stages, Sequence) and len(stages) > 0
    ok = ok and all(
        isinstance(s, Sequence) and len(s) > 0 and all(isinstance(c, int) and c > 0 for c in s)
        for s in stages
    )
    if not ok:
        raise ValueError(
            f"`stages` (={stages!r}) must be a non-empty sequence of non-empty sequences of "
            "positive ints (the conv widths of each encoder stage)"
        )
    return tuple(tuple(s) for s in stages)


class SegNet(nn.Module):
    """SegNet (see the module docstring).

    Attributes:
      num_classes: output classes.
      stages: the encoder's conv widths per stage (VGG-16's by default); the decoder
        mirrors them.
      norm: the normalization after every conv (``BatchNorm``; None: none).
      dtype: computation dtype.
    """

    num_classes: int = 11
    stages: Sequence[Sequence[int]] = SEGNET_VGG16_STAGES
    norm: ModuleDef | None = BatchNorm
    dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int(self.num_classes, "num_classes")
        _check_stages(self.stages)
        super().__post_init__()

    def _block(self, x: Array, width: int, name: str, train: bool) -> Array:
        x = Conv(width, 3, use_bias=self.norm is None, dtype=self.dtype, name=name)(x)
        if self.norm is not None:
            x = self.norm(dtype=self.dtype, name=f"{name}_bn")(x, train=train)
        return nn.relu(x)

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, dict[str, Array]]:
        """Dense class scores.

        Args:
          x: ``(N, H, W, C)`` images with ``H, W >= 2 ** len(stages)``.
          train: batch statistics in training, running averages in evaluation.

        Returns:
          ``(logits, features)``: logits ``(N, H, W, num_classes)``; features
          ``encoder{i}`` (each stage's pooled maps), ``indices{i}`` (their argmax
          indices), ``decoder{i}`` (each decoder stage's output).

        Raises:
          ValueError: for a wrong input rank or an input smaller than ``2 ** len(stages)``.
        """
        stages = _check_stages(self.stages)
        check_images(x, "SegNet", min_size=2 ** len(stages))
        f: dict[str, Array] = {}
        saved = []
        for i, widths in enumerate(stages):
            for j, width in enumerate(widths):
                x = self._block(x, width, f"enc{i + 1}_{j + 1}", train)
            size = x.shape[1:3]
            x, idx = ops.max_pool_with_indices(x, 2)
            saved.append((idx, size))
            f[f"encoder{i + 1}"], f[f"indices{i + 1}"] = x, idx
        for i in reversed(range(len(stages))):
            idx, size = saved[i]
            x = ops.max_unpool(x, idx, size)
            widths = stages[i]
            if i > 0:  # the last conv narrows to the previous stage's width
                out = [widths[-1]] * (len(widths) - 1) + [stages[i - 1][-1]]
            else:  # the first stage's last conv is the classifier below
                out = [widths[-1]] * (len(widths) - 1)
            for j, width in enumerate(out):
                x = self._block(x, width, f"dec{i + 1}_{j + 1}", train)
            f[f"decoder{i + 1}"] = x
        logits = Conv(self.num_classes, 3, dtype=self.dtype, name="classifier")(x)
        f["logits"] = logits
        return logits, f
