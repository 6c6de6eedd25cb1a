"""Convolution ops of ``cnn_jax.ops.conv`` against ``jax.lax`` and PyTorch CPU.

For every case, our op is timed against ``jax.lax.conv_general_dilated`` called
directly with the same explicit arguments (the reference: our wrappers resolve
padding and check arguments in Python at trace time only, so the ratio should be
1.00 and the programs the same, which the table checks), and against the PyTorch CPU
function on the same shapes (``torch.nn.functional.conv{1,2,3}d``,
``conv_transpose2d``, ``unfold`` + ``einsum`` for the unshared convolutions).
Forward (``fwd``) and forward plus the gradients with respect to the input and the
kernel(s) (``fwd+bwd``).

The ``eager`` row (``--only eager``, and at the end of every run) times an un-jitted
call of ``jax.vmap(jax.value_and_grad(f))`` with ``f`` a convolution, a max pool and a
sum, through ``cnn_jax.ops`` against the same function over raw ``lax`` ops, in the
same run: what a notebook or a debugging session pays per call.

Run from the repository root::

    python -m benchmarks.ops_conv              # full run, a few minutes on 2 cores
    python -m benchmarks.ops_conv --quick      # smoke test
    python -m benchmarks.ops_conv --only eager # the eager row only, seconds
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.common import ACTIVATION, KERNEL, Case

DN = {
    1: ("NWC", "WIO", "NWC"),
    2: ("NHWC", "HWIO", "NHWC"),
    3: ("NDHWC", "DHWIO", "NDHWC"),
}


def _randn(rng: np.random.Generator, *shape: int, fan_in: int | None = None) -> np.ndarray:
    scale = 1.0 if fan_in is None else 1.0 / np.sqrt(fan_in)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _lax_conv(
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int] | None = None,
    groups: int = 1,
):
    """``lax.conv_general_dilated`` with explicit arguments, channels-last."""
    from jax import lax

    n = len(strides)

    def f(x, k):
        return lax.conv_general_dilated(
            x,
            k,
            window_strides=tuple(strides),
            padding=tuple(padding),
            rhs_dilation=tuple(dilation or (1,) * n),
            dimension_numbers=DN[n],
            feature_group_count=groups,
        )

    return f


def conv_case(
    rng: np.random.Generator,
    name: str,
    batch: int,
    spatial: Sequence[int],
    window: Sequence[int],
    c_in: int,
    c_out: int,
    *,
    strides: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
    groups: int = 1,
) -> Case:
    """A ``conv`` case: ours with ``padding`` as given, lax with the explicit pairs."""
    from torch.nn import functional as tnf

    from cnn_jax.ops import conv
    from cnn_jax.ops.padding import resolve_padding

    n = len(spatial)
    s, d = (strides,) * n, (dilation,) * n
    pads = resolve_padding(padding, spatial, window, s, d)
    x = _randn(rng, batch, *spatial, c_in)
    k = _randn(rng, *window, c_in // groups, c_out, fan_in=c_in // groups * int(np.prod(window)))
    torch_conv = {1: tnf.conv1d, 2: tnf.conv2d, 3: tnf.conv3d}[n]
    if any(lo != hi for lo, hi in pads):
        raise ValueError(f"{name}: PyTorch needs symmetric padding, got {pads}")
    t_pad = tuple(lo for lo, _ in pads)

    def ours(x, k):
        return conv(x, k, strides=strides, padding=padding, dilation=dilation, groups=groups)

    def torch_fn(x, w):
        return torch_conv(x, w, stride=strides, padding=t_pad, dilation=dilation, groups=groups)

    others, note = {}, ""
    if groups > 1:
        dense = _lax_conv(s, pads, d)

        def block_diagonal(x, k):
            return dense(x, _block_diagonal_kernel(k, groups))

        others["block-diagonal dense conv"] = block_diagonal
        note = (
            "`block-diagonal dense conv`: the grouped kernel expanded to a dense "
            f"block-diagonal one ({groups}x the FLOPs) and one ungrouped convolution."
        )
    return Case(
        name=name,
        ours=ours,
        ref=_lax_conv(s, pads, d, groups),
        arrays=[x, k],
        n_diff=2,
        torch_fn=torch_fn,
        convert=[ACTIVATION, KERNEL],
        others=others,
        note=note,
    )


def _block_diagonal_kernel(k, groups: int):
    """A grouped kernel ``(*w, C_in / G, C_out)`` as a dense ``(*w, C_in, C_out)`` one."""
    import jax.numpy as jnp

    *window, cg, c_out = k.shape
    og = c_out // groups
    kk = k.reshape(*window, cg, groups, og)
    eye = jnp.eye(groups, dtype=k.dtype)
    dense = jnp.einsum("...cgo,Gg->...Gcgo", kk, eye)  # input channel G * cg + c
    return dense.reshape(*window, groups * cg, c_out)


def _depthwise_slices(x, k):
    """3x3 'SAME' depthwise convolution (multiplier 1) as 9 shifted multiply-adds."""
    import jax.numpy as jnp

    kh, kw = k.shape[:2]
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = None
    for i in range(kh):
        for j in range(kw):
            term = xp[:, i : i + h, j : j + w, :] * k[i, j, 0]
            out = term if out is None else out + term
    return out


def conv_transpose_case(
    rng: np.random.Generator,
    batch: int,
    size: int,
    window: int,
    c_in: int,
    c_out: int,
    strides: int,
    padding: int,
) -> Case:
    """``conv_transpose`` (upsampling ``c_out -> c_in``) vs the dilated lax conv."""
    import jax.numpy as jnp
    from jax import lax
    from torch.nn import functional as tnf

    from cnn_jax.ops import conv_transpose

    y = _randn(rng, batch, size, size, c_out)
    k = _randn(rng, window, window, c_in, c_out, fan_in=c_out * window * window)
    lax_pad = ((window - 1 - padding,) * 2,) * 2
    out = strides * (size - 1) + window - 2 * padding

    def ours(y, k):
        return conv_transpose(y, k, strides=strides, padding=padding)

    def ref(y, k):
        # The transposed kernel: input/output channels swapped, window flipped.
        kt = jnp.flip(jnp.swapaxes(k, 2, 3), (0, 1))
        return lax.conv_general_dilated(
            y,
            kt,
            window_strides=(1, 1),
            padding=lax_pad,
            lhs_dilation=(strides, strides),
            dimension_numbers=DN[2],
        )

    def torch_fn(y, w):
        return tnf.conv_transpose2d(y, w, stride=strides, padding=padding)

    return Case(
        name=f"conv_transpose {window}x{window}/{strides} p{padding} {c_out}->{c_in} "
        f"{size}x{size}->{out}x{out} N{batch}",
        ours=ours,
        ref=ref,
        arrays=[y, k],
        n_diff=2,
        torch_fn=torch_fn,
        convert=[ACTIVATION, KERNEL],
    )


def depthwise_case(rng: np.random.Generator, batch: int, size: int, chans: int) -> Case:
    """``depthwise_conv`` 3x3 'SAME' vs lax with ``feature_group_count=C``."""
    from torch.nn import functional as tnf

    from cnn_jax.ops import depthwise_conv

    x = _randn(rng, batch, size, size, chans)
    k = _randn(rng, 3, 3, 1, chans, fan_in=9)

    def ours(x, k):
        return depthwise_conv(x, k, padding="SAME")

    def torch_fn(x, w):
        return tnf.conv2d(x, w, padding=1, groups=chans)

    return Case(
        name=f"depthwise_conv 3x3 C{chans} {size}x{size} N{batch}",
        ours=ours,
        ref=_lax_conv((1, 1), ((1, 1), (1, 1)), groups=chans),
        arrays=[x, k],
        n_diff=2,
        torch_fn=torch_fn,
        convert=[ACTIVATION, KERNEL],
        others={"9 shifted multiply-adds": _depthwise_slices},
        note="`9 shifted multiply-adds`: the depthwise convolution written as a sum of "
        "9 shifted slices times per-channel weights (one XLA loop fusion, no convolution), "
        "differentiated by JAX: its kernel gradient is one reduction over the batch per tap "
        "(the depthwise fast path before its kernel gradient became a loop over chunks of "
        "the batch).",
    )


def separable_case(rng: np.random.Generator, batch: int, size: int, chans: int, c_out: int) -> Case:
    """``separable_conv`` (3x3 depthwise, 1x1 pointwise) vs two lax convolutions."""
    from torch.nn import functional as tnf

    from cnn_jax.ops import separable_conv

    x = _randn(rng, batch, size, size, chans)
    dk = _randn(rng, 3, 3, 1, chans, fan_in=9)
    pk = _randn(rng, chans, c_out, fan_in=chans)
    depthwise = _lax_conv((1, 1), ((1, 1), (1, 1)), groups=chans)
    pointwise = _lax_conv((1, 1), ((0, 0), (0, 0)))

    def ours(x, dk, pk):
        return separable_conv(x, dk, pk, padding="SAME")

    def ref(x, dk, pk):
        return pointwise(depthwise(x, dk), pk.reshape(1, 1, *pk.shape))

    def torch_fn(x, dw, pw):
        return tnf.conv2d(tnf.conv2d(x, dw, padding=1, groups=chans), pw)

    def slices(x, dk, pk):
        return pointwise(_depthwise_slices(x, dk), pk.reshape(1, 1, *pk.shape))

    pointwise_convert = (
        lambda a: np.ascontiguousarray(a.T[:, :, None, None]),
        lambda a: np.ascontiguousarray(a[:, :, 0, 0].T),
    )
    return Case(
        name=f"separable_conv 3x3 C{chans} + 1x1 {chans}->{c_out} {size}x{size} N{batch}",
        ours=ours,
        ref=ref,
        arrays=[x, dk, pk],
        n_diff=3,
        torch_fn=torch_fn,
        convert=[ACTIVATION, KERNEL, pointwise_convert],
        others={"shifted-slices depthwise + 1x1 conv": slices},
    )


def _patches_lax(x, window):
    """``(N, oh, ow, C * kh * kw)`` patches, features ``(C, kh, kw)``, as ours."""
    from jax import lax

    return lax.conv_general_dilated_patches(
        x,
        filter_shape=window,
        window_strides=(1, 1),
        padding=((0, 0), (0, 0)),
        rhs_dilation=(1, 1),
        dimension_numbers=DN[2],
        precision=lax.Precision.HIGHEST,
    )


def _patches_slices(x, window, out):
    """``(N, oh, ow, kh, kw, C)`` patches from shifted slices (no convolution)."""
    import jax.numpy as jnp

    (kh, kw), (oh, ow) = window, out
    rows = [jnp.stack([x[:, i : i + oh, j : j + ow] for j in range(kw)], axis=3) for i in range(kh)]
    return jnp.stack(rows, axis=3)


def _flat_kernel(k, lead: int):
    """``(*lead, kh, kw, C_in, C_out)`` -> ``(*lead, C_in * kh * kw, C_out)``."""
    import jax.numpy as jnp

    kk = jnp.moveaxis(k, lead + 2, lead)
    return kk.reshape(*kk.shape[:lead], -1, kk.shape[-1])


def _unshared_torch_convert(
    lead: Sequence[int], window: Sequence[int], c_in: int, c_out: int, flatten_lead: bool
):
    """Kernel ``(*lead, kh, kw, C_in, C_out)`` <-> torch ``(*lead', C_in * kh * kw, C_out)``.

    ``lead'`` is ``lead`` flattened to one axis if ``flatten_lead``.
    """
    nl = len(lead)
    flat_lead = (int(np.prod(lead)),) if flatten_lead else tuple(lead)

    def to_torch(a):
        a = np.moveaxis(a, nl + 2, nl)
        return np.ascontiguousarray(a.reshape(*flat_lead, c_in * int(np.prod(window)), c_out))

    def from_torch(a):
        a = a.reshape(*lead, c_in, *window, c_out)
        return np.ascontiguousarray(np.moveaxis(a, nl, nl + 2))

    return to_torch, from_torch


def locally_connected_case(
    rng: np.random.Generator, batch: int, size: int, window: int, c_in: int, c_out: int
) -> Case:
    """``locally_connected`` vs patches + einsum (lax), slices + einsum, torch unfold."""
    import jax.numpy as jnp
    import torch
    from torch.nn import functional as tnf

    from cnn_jax.ops import locally_connected

    o = size - window + 1
    w = (window, window)
    x = _randn(rng, batch, size, size, c_in)
    k = _randn(rng, o, o, window, window, c_in, c_out, fan_in=c_in * window * window)

    def ours(x, k):
        return locally_connected(x, k)

    def ref(x, k):
        return jnp.einsum("nhwf,hwfo->nhwo", _patches_lax(x, w), _flat_kernel(k, 2))

    def slices(x, k):
        return jnp.einsum("nhwijc,hwijco->nhwo", _patches_slices(x, w, (o, o)), k)

    def torch_fn(x, kt):
        p = tnf.unfold(x, w)  # (N, C * kh * kw, oh * ow), features (C, kh, kw)
        return torch.einsum("nfl,lfo->nol", p, kt).reshape(x.shape[0], -1, o, o)

    return Case(
        name=f"locally_connected {window}x{window} {c_in}->{c_out} {size}x{size}->{o}x{o} N{batch}",
        ours=ours,
        ref=ref,
        arrays=[x, k],
        n_diff=2,
        torch_fn=torch_fn,
        convert=[ACTIVATION, _unshared_torch_convert((o, o), w, c_in, c_out, True)],
        others={"slices+einsum": slices},
        note="lax reference: `lax.conv_general_dilated_patches` (precision HIGHEST, as "
        "ours) + `einsum`; `slices+einsum` builds the patches from shifted slices; "
        "torch: `F.unfold` + `torch.einsum`.",
    )


def tiled_conv_case(
    rng: np.random.Generator,
    batch: int,
    size: int,
    window: int,
    tile: int,
    c_in: int,
    c_out: int,
) -> Case:
    """``tiled_conv`` vs patches + einsum over (block, tile) axes, and torch unfold."""
    import jax.numpy as jnp
    import torch
    from torch.nn import functional as tnf

    from cnn_jax.ops import tiled_conv

    o = size - window + 1
    if o % tile:
        raise ValueError(f"tiled case: output {o} must be a multiple of the tile {tile}")
    b = o // tile
    w = (window, window)
    x = _randn(rng, batch, size, size, c_in)
    k = _randn(rng, tile, tile, window, window, c_in, c_out, fan_in=c_in * window * window)

    def ours(x, k):
        return tiled_conv(x, k)

    def ref(x, k):
        p = _patches_lax(x, w).reshape(batch, b, tile, b, tile, -1)
        out = jnp.einsum("nahbwf,hwfo->nahbwo", p, _flat_kernel(k, 2))
        return out.reshape(batch, o, o, c_out)

    def slices(x, k):
        p = _patches_slices(x, w, (o, o)).reshape(batch, b, tile, b, tile, *w, c_in)
        out = jnp.einsum("nahbwijc,hwijco->nahbwo", p, k)
        return out.reshape(batch, o, o, c_out)

    def torch_fn(x, kt):
        p = tnf.unfold(x, w).reshape(x.shape[0], -1, b, tile, b, tile)
        return torch.einsum("nfahbw,hwfo->noahbw", p, kt).reshape(x.shape[0], -1, o, o)

    return Case(
        name=f"tiled_conv {tile}x{tile} tiles {window}x{window} {c_in}->{c_out} "
        f"{size}x{size}->{o}x{o} N{batch}",
        ours=ours,
        ref=ref,
        arrays=[x, k],
        n_diff=2,
        torch_fn=torch_fn,
        convert=[ACTIVATION, _unshared_torch_convert((tile, tile), w, c_in, c_out, False)],
        others={"slices+einsum": slices},
        note="references as for `locally_connected`, the output grid split into "
        "(block, tile) axes.",
    )


def cases(quick: bool) -> list[Case]:
    """The benchmark cases (a few small ones with ``quick``).

    The batch sizes keep every row of the full run within seconds: XLA:CPU is slow on
    some of these (the kernel gradients of grouped and transposed convolutions, and
    depthwise convolutions).
    """
    rng = np.random.default_rng(0)
    c = functools.partial(conv_case, rng)
    # fmt: off
    if quick:
        return [
            c("conv2d 3x3 SAME 32->32 28x28 N2", 2, (28, 28), (3, 3), 32, 32, padding="SAME"),
            c("conv1d k5 SAME 32->32 L256 N2", 2, (256,), (5,), 32, 32, padding="SAME"),
            conv_transpose_case(rng, 2, 14, 4, 16, 32, 2, 1),
            separable_case(rng, 2, 28, 32, 64),
            locally_connected_case(rng, 2, 10, 3, 8, 8),
        ]
    return [
        c("conv2d 3x3 SAME 64->64 56x56 N8 (ResNet)", 8, (56, 56), (3, 3), 64, 64,
          padding="SAME"),
        c("conv2d 1x1 256->64 56x56 N2", 2, (56, 56), (1, 1), 256, 64),
        c("conv2d 7x7/2 p3 3->64 224x224 N2 (stem)", 2, (224, 224), (7, 7), 3, 64,
          strides=2, padding=3),
        c("conv2d 3x3/2 p1 64->128 56x56 N4", 4, (56, 56), (3, 3), 64, 128, strides=2,
          padding=1),
        c("conv2d 3x3 g32 128->128 14x14 N1 (ResNeXt)", 1, (14, 14), (3, 3), 128, 128,
          padding=1, groups=32),
        c("conv2d 3x3 d2 SAME 64->64 56x56 N2 (dilated)", 2, (56, 56), (3, 3), 64, 64,
          padding="SAME", dilation=2),
        c("conv1d k5 SAME 64->64 L1024 N8", 8, (1024,), (5,), 64, 64, padding="SAME"),
        c("conv3d 3x3x3 p1 16->32 8x32x32 N1", 1, (8, 32, 32), (3, 3, 3), 16, 32, padding=1),
        # First layers: fast path small_input (<= 3 channels, <= 32 products) or not (6->16).
        c("conv2d 5x5 1->6 32x32 N256 (first layers: LeNet-5 conv1)", 256, (32, 32), (5, 5), 1,
          6),
        c("conv2d 3x3 SAME 3->16 32x32 N128 (first layers: ResNet-20)", 128, (32, 32), (3, 3),
          3, 16, padding="SAME"),
        c("conv2d 2x2 3->24 32x32 N256 (first layers: airbench94)", 256, (32, 32), (2, 2), 3,
          24),
        c("conv2d 5x5 6->16 14x14 N256 (first layers: LeNet-5 conv2)", 256, (14, 14), (5, 5),
          6, 16),
        # The 3x3 layers of the training-step benchmark's CIFAR models (most of their time).
        c("conv2d 3x3 SAME 24->64 31x31 N256 (CIFAR layers: airbench94)", 256, (31, 31),
          (3, 3), 24, 64, padding="SAME"),
        c("conv2d 3x3 SAME 64->64 15x15 N256 (CIFAR layers: airbench94)", 256, (15, 15),
          (3, 3), 64, 64, padding="SAME"),
        c("conv2d 3x3 SAME 64->256 15x15 N256 (CIFAR layers: airbench94)", 256, (15, 15),
          (3, 3), 64, 256, padding="SAME"),
        c("conv2d 3x3 SAME 256->256 7x7 N256 (CIFAR layers: airbench94, twice)", 256, (7, 7),
          (3, 3), 256, 256, padding="SAME"),
        c("conv2d 3x3 SAME 256->256 3x3 N256 (CIFAR layers: airbench94)", 256, (3, 3),
          (3, 3), 256, 256, padding="SAME"),
        c("conv2d 3x3 SAME 16->16 32x32 N128 (CIFAR layers: ResNet-20, 6 of them)", 128,
          (32, 32), (3, 3), 16, 16, padding="SAME"),
        c("conv2d 3x3 SAME 32->32 16x16 N128 (CIFAR layers: ResNet-20, 5 of them)", 128,
          (16, 16), (3, 3), 32, 32, padding="SAME"),
        c("conv2d 3x3 SAME 64->64 8x8 N128 (CIFAR layers: ResNet-20, 5 of them)", 128, (8, 8),
          (3, 3), 64, 64, padding="SAME"),
        conv_transpose_case(rng, 2, 14, 4, 32, 64, 2, 1),
        # The U-Net decoder's 2x2/2 up-sampling (kernel == stride: fast path
        # conv_transpose_tiles), batch 32.
        conv_transpose_case(rng, 32, 8, 2, 128, 256, 2, 0),
        conv_transpose_case(rng, 32, 16, 2, 64, 128, 2, 0),
        conv_transpose_case(rng, 32, 32, 2, 32, 64, 2, 0),
        depthwise_case(rng, 1, 56, 128),
        # Training batches (the kernel gradient's loop over chunks of the batch):
        depthwise_case(rng, 64, 10, 728),  # Xception middle flow
        depthwise_case(rng, 32, 56, 128),  # MobileNet, 56x56 stage
        depthwise_case(rng, 128, 32, 32),
        separable_case(rng, 1, 56, 64, 128),
        locally_connected_case(rng, 8, 16, 3, 16, 16),
        tiled_conv_case(rng, 8, 16, 3, 2, 16, 16),
    ]
    # fmt: on


def eager_functions(quick: bool) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The eager row: ``vmap(value_and_grad(f))`` called without ``jax.jit``, ours and lax.

    ``f(kernel, x)`` is a 3x3 SAME convolution 1->8 of a batch of 28x28x1 images, a 2x2
    max pool and a sum; ``vmap`` runs it over a leading axis of 4 such batches.

    Args:
      quick: a batch of 2 instead of 8.

    Returns:
      ``(ours, ref)``: callables that run one eager call each and wait for its results.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    from cnn_jax import ops

    batch = 2 if quick else 8
    rng = np.random.default_rng(0)
    x = jnp.asarray(_randn(rng, 4, batch, 28, 28, 1))
    k = jnp.asarray(_randn(rng, 3, 3, 1, 8, fan_in=9))

    def ours(k, x):
        return jnp.sum(ops.max_pool(ops.conv(x, k, padding="SAME"), 2))

    def ref(k, x):
        y = lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN[2])
        y = lax.reduce_window(y, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return jnp.sum(y)

    def call(f: Callable[..., Any]) -> Callable[[], Any]:
        g = jax.vmap(jax.value_and_grad(f), in_axes=(None, 0))
        return lambda: jax.block_until_ready(g(k, x))

    return call(ours), call(ref)


def run_eager(settings: common.Settings) -> None:
    """Times the eager row (``eager_functions``) and prints its ratio to lax.

    Args:
      settings: the rounds and samples.

    Raises:
      AssertionError: if ours and lax disagree on the values or gradients.
    """
    ours, ref = eager_functions(settings.quick)
    err = common.max_rel_error(common.leaves(ours()), common.leaves(ref()))
    assert err < 1e-4, f"eager: ours and lax differ (max relative error {err:.1e})"
    times = common.measure({"ours": ours, "lax": ref}, settings.rounds, settings.reps)
    print("\n## Eager calls (no jax.jit)\n")
    print(
        common.markdown_table(
            ["function", "ours (ms)", "lax (ms)", "ours / lax (rounds)", "max rel err"],
            [
                [
                    "vmap(value_and_grad(conv 3x3 1->8 + max_pool 2 + sum)), 4 x N"
                    f"{2 if settings.quick else 8} 28x28x1",
                    common.format_ms(times["ours"].median),
                    common.format_ms(times["lax"].median),
                    common.format_ratio(common.ratio(times["ours"], times["lax"])),
                    f"{err:.1e}",
                ]
            ],
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, runs every case (or the eager row) and prints the report."""
    settings = common.parse_args(__doc__.splitlines()[0], argv)
    used = common.set_threads(settings.threads, settings.omp_wait_policy)
    if settings.only is None or "eager" not in settings.only.lower():
        if common.optional_torch() is None:
            raise SystemExit("benchmarks.ops_conv needs PyTorch CPU: pip install -e '.[torch]'")
        common.run_cases(cases(settings.quick), settings, used, "Convolution ops", "lax")
    else:
        print("# Convolution ops: eager calls\n")
        print("\n".join(common.environment_lines(settings, used)))
    run_eager(settings)


if __name__ == "__main__":
    main()
