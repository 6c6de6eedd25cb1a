r"""WaveNet (van den Oord et al. 2016): dilated causal convolutions over mu-law audio.

The network reads the audio's 8-bit mu-law codes (``cnn_jax.data.mulaw``) shifted
right by one sample (silence, code 128, first), so that the logits at time ``t`` give
:math:`p(x_t \mid x_{<t}, h)` over the ``quantization`` levels:

* input: a causal convolution of width ``input_kernel_size`` over the one-hot codes to
  ``residual_channels``;
* one residual block per entry of ``dilations`` (default 1, 2, ..., 512 twice): a
  dilated causal convolution of width ``kernel_size`` (``cnn_jax.ops.conv`` with
  ``'CAUSAL'`` padding) to ``2 * gate_channels``, the gated activation
  :math:`z = \tanh(W_f * x + V_f h) \odot \sigma(W_g * x + V_g h)`, a 1x1 convolution of
  ``z`` to ``skip_channels`` (the skip connection) and one back to
  ``residual_channels`` added to the block's input (the residual connection; the last
  block has none, nothing reads it);
* output: ReLU of the sum of the skips, 1x1 to ``skip_channels``, ReLU, 1x1 to
  ``quantization`` logits (a softmax over the levels).

Conditioning enters every gate (:math:`V_f h`, :math:`V_g h`): **global** by an integer id
(``label``, e.g. the speaker or the spoken digit; ``num_classes`` ids, an embedding of
``2 * gate_channels`` per block), **local** by a feature sequence ``local`` of
``local_channels`` at ``1 / local_upsample`` of the audio rate, upsampled by repeating
each frame ``local_upsample`` times, then a 1x1 convolution per block.

Parameters (``Q`` levels, ``R`` residual, ``G`` gate, ``S`` skip channels, ``k`` /
``k_in`` widths, ``L`` blocks, ``K`` ids, ``F`` local channels):
``k_in Q R + R + L (k R 2G + 2G + K 2G + F 2G + G S + S) + (L - 1)(G R + R) + S S + S + S Q + Q``
(:func:`wavenet_num_params`); the paper states none. The receptive field is
``k_in + (k - 1) * sum(dilations)`` samples (:meth:`WaveNet.receptive_field`, from
``cnn_jax.ops.shapes.receptive_field``): 2,048 with the defaults.

:class:`WaveNetScorer` is the same network for the training loop: its outputs are the
per-sample log2-likelihood of each utterance under each conditioning id (module
``cnn_jax.models.wavenet_scorer``; the loss is ``cnn_jax.train.losses_sequence``).
Fast generation: ``cnn_jax.models.wavenet_generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.data.mulaw import mu_law_encode
from cnn_jax.models._common import check_positive_int, check_positive_ints
from cnn_jax.ops.conv import conv as causal_conv
from cnn_jax.ops.shapes import receptive_field

__all__ = [
    "WaveNet",
    "check_audio",
    "dilation_stack",
    "shift_right",
    "valid_mask",
    "wavenet_num_params",
]

Array = Any


def dilation_stack(layers: int = 10, stacks: int = 2) -> tuple[int, ...]:
    """``(1, 2, ..., 2**(layers - 1))`` repeated ``stacks`` times (the paper's layout)."""
    check_positive_int(layers, "layers")
    check_positive_int(stacks, "stacks")
    return tuple(2**i for i in range(layers)) * stacks


def check_audio(x: Any, model: str = "WaveNet", name: str = "x") -> tuple[int, int]:
    """Checks a batch of mono audio ``(N, T, 1)`` of floats; returns ``(N, T)``.

    Raises:
      ValueError: naming ``name`` and its shape for another rank or channel count.
      TypeError: naming ``name`` and its dtype for integer audio.
    """
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 3 or shape[-1] != 1 or shape[1] < 1:
        got = f"shape {tuple(shape)}" if shape is not None else repr(x)
        raise ValueError(f"{model} expects `{name}` audio of shape (N, T, 1), got {got}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{model} expects `{name}` floating-point audio in [-1, 1], got dtype {x.dtype}"
        )
    return int(shape[0]), int(shape[1])


def shift_right(codes: Array, quantization: int = 256) -> Array:
    """``(N, T)`` codes to the network's inputs: silence first, the last code dropped.

    Silence is the code of ``x = 0``, ``quantization // 2`` (128 for 8 bits).
    """
    start = jnp.full((codes.shape[0], 1), quantization // 2, codes.dtype)
    return jnp.concatenate([start, codes[:, :-1]], axis=1)


def valid_mask(audio: Array) -> Array:
    """``(N, T)`` float mask of each utterance up to its last non-zero sample.

    Data sets pad recordings with zeros at the end (FSDD); the trailing run of exact
    zeros is not modelled. An all-zero utterance keeps its first sample.
    """
    nz = audio[..., 0] != 0
    t = audio.shape[1]
    last = jnp.max(jnp.where(nz, jnp.arange(t)[None], 0), axis=1)
    return (jnp.arange(t)[None] <= last[:, None]).astype(jnp.float32)


def wavenet_num_params(
    *,
    dilations: Sequence[int],
    quantization: int = 256,
    residual_channels: int = 32,
    gate_channels: int = 32,
    skip_channels: int = 128,
    kernel_size: int = 2,
    input_kernel_size: int = 2,
    num_classes: int | None = None,
    local_channels: int = 0,
) -> int:
    """The parameter count of a :class:`WaveNet` (the module docstring's formula)."""
    q, r, g, s, k, n_l = (
        quantization,
        residual_channels,
        gate_channels,
        skip_channels,
        kernel_size,
        len(dilations),
    )
    block = k * r * 2 * g + 2 * g + ((num_classes or 0) + local_channels) * 2 * g + g * s + s
    return (
        input_kernel_size * q * r
        + r
        + n_l * block
        + (n_l - 1) * (g * r + r)
        + s * s
        + s
        + s * q
        + q
    )


class _Block(nn.Module):
    """One residual block; its parameter names are read by the fast generator."""

    dilation: int
    kernel_size: int
    residual_channels: int
    gate_channels: int
    skip_channels: int
    num_classes: int | None
    local_channels: int
    last: bool

    @nn.compact
    def __call__(self, x: Array, label: Array | None, local: Array | None) -> tuple[Array, Array]:
        g2 = 2 * self.gate_channels
        init = nn.initializers.lecun_normal()
        kernel = self.param("dilated_kernel", init, (self.kernel_size, self.residual_channels, g2))
        bias = self.param("dilated_bias", nn.initializers.zeros, (g2,))
        h = causal_conv(x, kernel, bias, padding="CAUSAL", dilation=self.dilation)
        if self.num_classes:
            emb = self.param("global_embedding", init, (self.num_classes, g2))
            h = h + jnp.take(emb, label, axis=0)[:, None, :]
        if self.local_channels:
            v = self.param("local_kernel", init, (self.local_channels, g2))
            h = h + local @ v
        z = jnp.tanh(h[..., : self.gate_channels]) * jax.nn.sigmoid(h[..., self.gate_channels :])
        ws = self.param("skip_kernel", init, (self.gate_channels, self.skip_channels))
        bs = self.param("skip_bias", nn.initializers.zeros, (self.skip_channels,))
        skip = z @ ws + bs
        if self.last:
            return x, skip
        wr = self.param("residual_kernel", init, (self.gate_channels, self.residual_channels))
        br = self.param("residual_bias", nn.initializers.zeros, (self.residual_channels,))
        return x + z @ wr + br, skip


class WaveNet(nn.Module):
    """WaveNet over mu-law codes (see the module docstring).

    Attributes:
      num_classes: ids of the global conditioning (None: none); ``label`` is then needed.
      quantization: mu-law levels (256: 8 bits).
      dilations: the blocks' dilations (``dilation_stack()`` by default).
      residual_channels: channels of the residual stream.
      gate_channels: channels of the gated activation.
      skip_channels: channels of the skips and of the hidden output layer.
      kernel_size: width of the dilated convolutions.
      input_kernel_size: width of the input causal convolution.
      local_channels: channels of the local conditioning (0: none).
      local_upsample: audio samples per local-conditioning frame.
    """

    num_classes: int | None = None
    quantization: int = 256
    dilations: tuple[int, ...] = dilation_stack()
    residual_channels: int = 32
    gate_channels: int = 32
    skip_channels: int = 128
    kernel_size: int = 2
    input_kernel_size: int = 2
    local_channels: int = 0
    local_upsample: int = 1

    def __post_init__(self) -> None:
        if self.num_classes is not None:
            check_positive_int(self.num_classes, "num_classes")
        if not (isinstance(self.local_channels, int) and self.local_channels >= 0):
            raise ValueError(f"`local_channels` (={self.local_channels!r}) must be an int >= 0")
        check_positive_ints(self.dilations, "dilations")
        for name in (
            "residual_channels",
            "gate_channels",
            "skip_channels",
            "kernel_size",
            "input_kernel_size",
            "local_upsample",
        ):
            check_positive_int(getattr(self, name), name)
        if check_positive_int(self.quantization, "quantization") < 2:
            raise ValueError(f"`quantization` (={self.quantization}) must be at least 2")
        super().__post_init__()

    def receptive_field_layers(self) -> list[dict[str, Any]]:
        """The causal convolutions as ``cnn_jax.ops.shapes.receptive_field`` layers."""
        first = {"kernel": self.input_kernel_size, "padding": "CAUSAL"}
        rest = [
            {"kernel": self.kernel_size, "dilation": d, "padding": "CAUSAL"} for d in self.dilations
        ]
        return [first, *rest]

    def receptive_field(self) -> int:
        """Input positions (inclusive of the current one) that one output sees."""
        return int(receptive_field(self.receptive_field_layers()).size[0])

    def _check_conditioning(
        self, n: int, t: int, label: Any, local: Any, need_label: bool = True
    ) -> tuple[Any, Any]:
        if self.num_classes and (label is not None or need_label):
            if label is None:
                raise ValueError(
                    f"WaveNet with `num_classes` (={self.num_classes}) needs `label`, got None"
                )
            label = jnp.asarray(label)
            if label.shape != (n,) or not jnp.issubdtype(label.dtype, jnp.integer):
                raise ValueError(
                    f"`label` must be ({n},) integer ids, got shape {label.shape} {label.dtype}"
                )
        elif label is not None:
            raise ValueError("`label` given to a WaveNet without global conditioning")
        if self.local_channels:
            shape = getattr(local, "shape", None)
            if shape is None or len(shape) != 3 or shape[0] != n or shape[2] != self.local_channels:
                got = f"shape {tuple(shape)}" if shape is not None else repr(local)
                raise ValueError(
                    f"`local` must be ({n}, frames, {self.local_channels}) features, got {got}"
                )
            if shape[1] * self.local_upsample < t:
                raise ValueError(
                    f"`local` has {shape[1]} frames x `local_upsample` (={self.local_upsample})"
                    f" = {shape[1] * self.local_upsample} samples, fewer than the audio's {t}"
                )
            local = self.upsample_local(local, t)
        elif local is not None:
            raise ValueError("`local` given to a WaveNet with `local_channels` 0")
        return label, local

    def upsample_local(self, local: Array, t: int) -> Array:
        """Local features ``(N, frames, F)`` at the audio rate: ``(N, t, F)`` (repeated)."""
        return jnp.repeat(jnp.asarray(local), self.local_upsample, axis=1)[:, :t]

    @nn.compact
    def logits_from_inputs(
        self, inputs: Array, label: Array | None = None, local: Array | None = None
    ) -> tuple[Array, Array]:
        """Logits ``(N, T, quantization)`` and summed skips from one-hot inputs.

        Args:
          inputs: ``(N, T, quantization)`` one-hot input codes (floats; any values are
            accepted, which is what the Jacobian tests use).
          label: ``(N,)`` ids for global conditioning.
          local: ``(N, T, local_channels)`` local conditioning features at the audio
            rate (:meth:`upsample_local`).
        """
        if self.num_classes and label is None:
            raise ValueError(
                f"WaveNet with `num_classes` (={self.num_classes}) needs `label`, got None"
            )
        init = nn.initializers.lecun_normal()
        r = self.residual_channels
        k_in = self.param("input_kernel", init, (self.input_kernel_size, self.quantization, r))
        b_in = self.param("input_bias", nn.initializers.zeros, (r,))
        x = causal_conv(inputs, k_in, b_in, padding="CAUSAL")
        skips = 0.0
        for i, d in enumerate(self.dilations):
            x, s = _Block(
                d,
                self.kernel_size,
                r,
                self.gate_channels,
                self.skip_channels,
                self.num_classes,
                self.local_channels,
                i == len(self.dilations) - 1,
                name=f"block_{i}",
            )(x, label, local)
            skips = skips + s
        h = nn.relu(skips)
        s = self.skip_channels
        h = nn.relu(
            h @ self.param("output1_kernel", init, (s, s))
            + self.param("output1_bias", nn.initializers.zeros, (s,))
        )
        logits = h @ self.param("output2_kernel", init, (s, self.quantization)) + self.param(
            "output2_bias", nn.initializers.zeros, (self.quantization,)
        )
        return logits, skips

    def __call__(
        self,
        x: Array,
        train: bool = False,
        label: Array | None = None,
        local: Array | None = None,
    ) -> tuple[Array, dict[str, Array]]:
        """Next-sample logits for audio.

        Args:
          x: ``(N, T, 1)`` audio in ``[-1, 1]`` (floats).
          train: unused (no dropout or normalization); kept for the models' contract.
          label: ``(N,)`` integer ids; required iff ``num_classes`` is set.
          local: ``(N, frames, local_channels)``, ``frames * local_upsample >= T``;
            required iff ``local_channels > 0``.

        Returns:
          ``(logits, features)``: ``logits`` ``(N, T, quantization)`` where
          ``logits[:, t]`` predicts the code of sample ``t`` from the samples before it;
          features ``codes`` ``(N, T)`` (the targets) and ``skips`` ``(N, T, S)``.

        Raises:
          ValueError, TypeError: naming ``x``, ``label`` or ``local`` for bad shapes.
        """
        del train
        check_audio(x)
        codes = mu_law_encode(x[..., 0], self.quantization - 1)
        inputs = jax.nn.one_hot(
            shift_right(codes, self.quantization), self.quantization, dtype=jnp.float32
        )
        label, local = self._check_conditioning(x.shape[0], x.shape[1], label, local)
        logits, skips = self.logits_from_inputs(inputs, label, local)
        return logits, {"codes": codes, "skips": skips}
