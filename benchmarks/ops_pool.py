"""Pooling ops of ``cnn_jax.ops.pool`` against flax/lax formulations and PyTorch CPU.

For every case, our op is timed against the nearest formulation one would write with
flax or ``jax.lax``/``jax.numpy`` directly (the reference, named in the table:
``flax.linen.max_pool``/``avg_pool``, ``lax.reduce_window``, ``jnp.mean``, a loop of
slices for adaptive bins, a reshape + ``argmax`` + scatter for the indices), and
against the PyTorch CPU function on the same shapes (``F.max_pool2d``,
``avg_pool2d``, ``lp_pool2d``, ``adaptive_*``, ``max_pool2d(return_indices=True)`` +
``max_unpool2d``). Forward (``fwd``) and forward plus the gradient with respect to
the input (``fwd+bwd``).

Run from the repository root::

    python -m benchmarks.ops_pool            # full run, a few minutes on 2 cores
    python -m benchmarks.ops_pool --quick    # smoke test
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks import common
from benchmarks.common import Case


def _randn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _shape(batch: int, spatial: Sequence[int], chans: int) -> str:
    return f"{'x'.join(map(str, spatial))}x{chans} N{batch}"


def _pairs(p: int, n: int) -> tuple[tuple[int, int], ...]:
    return ((p, p),) * n


def max_pool_case(
    rng: np.random.Generator,
    batch: int,
    spatial: Sequence[int],
    chans: int,
    window: int,
    strides: int,
    padding: int,
    note: str = "",
) -> Case:
    """``max_pool`` vs ``flax.linen.max_pool`` and ``F.max_pool{2,3}d``."""
    import flax.linen as nn
    from torch.nn import functional as tnf

    from cnn_jax.ops import max_pool

    n = len(spatial)
    x = _randn(rng, batch, *spatial, chans)
    torch_pool = {1: tnf.max_pool1d, 2: tnf.max_pool2d, 3: tnf.max_pool3d}[n]

    def ours(x):
        return max_pool(x, window, strides, padding)

    def ref(x):
        return nn.max_pool(x, (window,) * n, (strides,) * n, _pairs(padding, n))

    def torch_fn(x):
        return torch_pool(x, window, strides, padding)

    w = "x".join([str(window)] * n)
    return Case(
        name=f"max_pool {w}/{strides} p{padding} {_shape(batch, spatial, chans)}{note}",
        ours=ours,
        ref=ref,
        ref_name="flax.linen.max_pool",
        arrays=[x],
        torch_fn=torch_fn,
    )


def avg_pool_case(
    rng: np.random.Generator,
    batch: int,
    size: int,
    chans: int,
    window: int,
    strides: int,
    padding: int,
    count_include_pad: bool,
    note: str = "",
) -> Case:
    """``avg_pool`` vs ``flax.linen.avg_pool`` and ``F.avg_pool2d``."""
    import flax.linen as nn
    from torch.nn import functional as tnf

    from cnn_jax.ops import avg_pool

    x = _randn(rng, batch, size, size, chans)
    inc = count_include_pad

    def ours(x):
        return avg_pool(x, window, strides, padding, count_include_pad=inc)

    def ref(x):
        return nn.avg_pool(
            x, (window,) * 2, (strides,) * 2, _pairs(padding, 2), count_include_pad=inc
        )

    def torch_fn(x):
        return tnf.avg_pool2d(x, window, strides, padding, count_include_pad=inc)

    pad = f" p{padding}" + ("" if inc or not padding else " excl. pad")
    return Case(
        name=f"avg_pool {window}x{window}/{strides}{pad} {_shape(batch, (size, size), chans)}"
        f"{note}",
        ours=ours,
        ref=ref,
        ref_name="flax.linen.avg_pool",
        arrays=[x],
        torch_fn=torch_fn,
    )


def lp_pool_case(rng: np.random.Generator, batch: int, size: int, chans: int, p: float) -> Case:
    """``lp_pool`` vs ``(reduce_window(x ** p, add)) ** (1 / p)`` and ``F.lp_pool2d``."""
    import jax.numpy as jnp
    from jax import lax
    from torch.nn import functional as tnf

    from cnn_jax.ops import lp_pool

    # Positive inputs: PyTorch (and the definition) give NaN for negative x ** p.
    x = np.abs(_randn(rng, batch, size, size, chans)) + 0.1

    def ours(x):
        return lp_pool(x, 2, p=p)

    def ref(x):
        dims = (1, 2, 2, 1)
        total = lax.reduce_window(x**p, 0.0, lax.add, dims, dims, "VALID")
        return jnp.sqrt(total) if p == 2 else total ** (1.0 / p)

    def torch_fn(x):
        return tnf.lp_pool2d(x, p, 2)

    return Case(
        name=f"lp_pool p={p:g} 2x2/2 {_shape(batch, (size, size), chans)}",
        ours=ours,
        ref=ref,
        ref_name="lax.reduce_window(x**p)**(1/p)",
        arrays=[x],
        torch_fn=torch_fn,
    )


def global_case(rng: np.random.Generator, batch: int, size: int, chans: int, kind: str) -> Case:
    """``global_{avg,max}_pool`` vs ``jnp.mean``/``jnp.max`` and ``F.adaptive_*_pool2d(1)``."""
    import jax.numpy as jnp
    from torch.nn import functional as tnf

    from cnn_jax.ops import global_avg_pool, global_max_pool

    x = _randn(rng, batch, size, size, chans)
    ours_fn = global_avg_pool if kind == "avg" else global_max_pool
    jnp_fn = jnp.mean if kind == "avg" else jnp.max
    torch_pool = tnf.adaptive_avg_pool2d if kind == "avg" else tnf.adaptive_max_pool2d

    def ours(x):
        return ours_fn(x)

    def ref(x):
        return jnp_fn(x, axis=(1, 2))

    def torch_fn(x):
        return torch_pool(x, 1).flatten(1)

    return Case(
        name=f"global_{kind}_pool {_shape(batch, (size, size), chans)} (ResNet head)",
        ours=ours,
        ref=ref,
        ref_name=f"jnp.{jnp_fn.__name__}",
        arrays=[x],
        torch_fn=torch_fn,
    )


def _bins(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive bins, ``[floor(i in / out), ceil((i + 1) in / out))``."""
    return [
        ((i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)) for i in range(out_size)
    ]


def adaptive_case(
    rng: np.random.Generator, batch: int, size: int, chans: int, out: int, kind: str
) -> Case:
    """``adaptive_{avg,max}_pool`` vs a pool (divisible sizes) or slices, and PyTorch."""
    import flax.linen as nn
    import jax.numpy as jnp
    from torch.nn import functional as tnf

    from cnn_jax.ops import adaptive_avg_pool, adaptive_max_pool

    x = _randn(rng, batch, size, size, chans)
    ours_fn = adaptive_avg_pool if kind == "avg" else adaptive_max_pool
    torch_pool = tnf.adaptive_avg_pool2d if kind == "avg" else tnf.adaptive_max_pool2d
    divisible = size % out == 0
    bins = _bins(size, out)

    def ours(x):
        return ours_fn(x, out)

    if divisible:
        k = size // out
        flax_pool = nn.avg_pool if kind == "avg" else nn.max_pool
        ref_name = f"flax.linen.{kind}_pool {k}x{k}/{k}"

        def ref(x):
            return flax_pool(x, (k, k), (k, k))

    else:
        reduce = jnp.mean if kind == "avg" else jnp.max
        ref_name = f"{out * out} slices + jnp.{reduce.__name__}"

        def ref(x):
            rows = [
                jnp.stack([reduce(x[:, h0:h1, w0:w1], axis=(1, 2)) for w0, w1 in bins], axis=1)
                for h0, h1 in bins
            ]
            return jnp.stack(rows, axis=1)

    def torch_fn(x):
        return torch_pool(x, out)

    return Case(
        name=f"adaptive_{kind}_pool {size}->{out} "
        f"{'' if divisible else '(uneven bins) '}{_shape(batch, (size, size), chans)}",
        ours=ours,
        ref=ref,
        ref_name=ref_name,
        arrays=[x],
        torch_fn=torch_fn,
    )


def _argmax_2x2(x):
    """Values and flat ``h * W + w`` indices of 2x2/2 max pooling, by reshape + argmax."""
    import jax.numpy as jnp

    n, h, w, c = x.shape
    y = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
    y = y.reshape(n, h // 2, w // 2, c, 4)
    a = jnp.argmax(y, axis=-1)  # first maximum in window order, as PyTorch
    vals = jnp.take_along_axis(y, a[..., None], axis=-1)[..., 0]
    rows = 2 * jnp.arange(h // 2)[None, :, None, None] + a // 2
    cols = 2 * jnp.arange(w // 2)[None, None, :, None] + a % 2
    return vals, (rows * w + cols).astype(jnp.int32)


def _scatter_unpool(vals, idx, out_shape):
    """``out[n, idx, c] = vals`` over the flattened spatial dimensions: one scatter."""
    import jax.numpy as jnp

    n, c = vals.shape[0], vals.shape[-1]
    size = int(np.prod(out_shape))
    b = jnp.arange(n)[:, None, None]
    ch = jnp.arange(c)[None, None, :]
    out = jnp.zeros((n, size, c), vals.dtype)
    out = out.at[b, idx.reshape(n, -1, c), ch].set(vals.reshape(n, -1, c))
    return out.reshape(n, *out_shape, c)


def indices_case(rng: np.random.Generator, batch: int, size: int, chans: int) -> Case:
    """``max_pool_with_indices`` 2x2/2 vs reshape + argmax and ``return_indices=True``."""
    from torch.nn import functional as tnf

    from cnn_jax.ops import max_pool_with_indices

    x = _randn(rng, batch, size, size, chans)

    def ours(x):
        return max_pool_with_indices(x, 2)

    def torch_fn(x):
        return tnf.max_pool2d(x, 2, 2, return_indices=True)

    return Case(
        name=f"max_pool_with_indices 2x2/2 {_shape(batch, (size, size), chans)}",
        ours=ours,
        ref=_argmax_2x2,
        ref_name="reshape + jnp.argmax",
        arrays=[x],
        n_diff=0,
        torch_fn=torch_fn,
    )


def unpool_case(rng: np.random.Generator, batch: int, size: int, chans: int) -> Case:
    """``max_unpool(*max_pool_with_indices(x))`` 2x2/2 vs argmax + scatter and PyTorch."""
    import jax
    import jax.numpy as jnp
    from torch.nn import functional as tnf

    from cnn_jax.ops import max_pool_with_indices, max_unpool

    x = _randn(rng, batch, size, size, chans)
    o = size // 2

    def ours(x):
        vals, idx = max_pool_with_indices(x, 2)
        return max_unpool(vals, idx, (size, size))

    def ref(x):
        vals, idx = _argmax_2x2(x)
        return _scatter_unpool(vals, idx, (size, size))

    def one_hot(x):
        n, _, _, c = x.shape
        y = x.reshape(n, o, 2, o, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, o, o, c, 4)
        a = jnp.argmax(y, axis=-1)
        vals = jnp.take_along_axis(y, a[..., None], axis=-1)
        out = jax.nn.one_hot(a, 4, dtype=x.dtype) * vals  # (n, o, o, c, 4)
        return out.reshape(n, o, o, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(x.shape)

    def torch_fn(x):
        vals, idx = tnf.max_pool2d(x, 2, 2, return_indices=True)
        return tnf.max_unpool2d(vals, idx, 2, 2, output_size=(size, size))

    return Case(
        name=f"max_pool_with_indices + max_unpool 2x2/2 {_shape(batch, (size, size), chans)}",
        ours=ours,
        ref=ref,
        ref_name="reshape + argmax + scatter",
        arrays=[x],
        torch_fn=torch_fn,
        others={"argmax + one_hot": one_hot},
        note="`argmax + one_hot` writes each 2x2 window's maximum back with a one-hot mask "
        "(no scatter; only for non-overlapping windows).",
    )


def stochastic_case(rng: np.random.Generator, batch: int, size: int, chans: int) -> Case:
    """``stochastic_pool(train=False)`` vs two ``reduce_window`` sums, and PyTorch."""
    import jax
    import jax.numpy as jnp
    import torch
    from jax import lax
    from torch.nn import functional as tnf

    from cnn_jax.ops import stochastic_pool

    x = _randn(rng, batch, size, size, chans)

    def ours(x):
        return stochastic_pool(x, 2, train=False)

    def ref(x):
        a = jax.nn.relu(x)
        dims = (1, 2, 2, 1)
        s1 = lax.reduce_window(a, 0.0, lax.add, dims, dims, "VALID")
        s2 = lax.reduce_window(a * a, 0.0, lax.add, dims, dims, "VALID")
        return jnp.where(s1 > 0, s2 / jnp.where(s1 > 0, s1, 1.0), 0.0)

    def torch_fn(x):
        a = torch.relu(x)
        s1 = tnf.avg_pool2d(a, 2)
        s2 = tnf.avg_pool2d(a * a, 2)
        return torch.where(s1 > 0, s2 / torch.where(s1 > 0, s1, 1.0), 0.0)

    return Case(
        name=f"stochastic_pool eval 2x2/2 {_shape(batch, (size, size), chans)}",
        ours=ours,
        ref=ref,
        ref_name="relu + 2 lax.reduce_window sums",
        arrays=[x],
        torch_fn=torch_fn,
        note="PyTorch has no stochastic pooling: the same formula, "
        "`avg_pool2d(a * a) / avg_pool2d(a)` with `a = relu(x)`.",
    )


def maxout_case(rng: np.random.Generator, batch: int, size: int, chans: int, k: int) -> Case:
    """``maxout`` over channels vs reshape + ``jnp.max`` and ``unflatten`` + ``amax``."""
    import jax.numpy as jnp

    from cnn_jax.ops import maxout

    x = _randn(rng, batch, size, size, chans)

    def ours(x):
        return maxout(x, k)

    def ref(x):
        return jnp.max(x.reshape(*x.shape[:-1], chans // k, k), axis=-1)

    def torch_fn(x):
        return x.unflatten(1, (chans // k, k)).amax(2)

    return Case(
        name=f"maxout k={k} {_shape(batch, (size, size), chans)}",
        ours=ours,
        ref=ref,
        ref_name="reshape + jnp.max",
        arrays=[x],
        torch_fn=torch_fn,
    )


def cases(quick: bool) -> list[Case]:
    """The benchmark cases (a few small ones with ``quick``)."""
    rng = np.random.default_rng(0)
    if quick:
        return [
            max_pool_case(rng, 2, (28, 28), 32, 3, 2, 1),
            avg_pool_case(rng, 2, 28, 32, 3, 1, 1, False),
            adaptive_case(rng, 2, 25, 32, 7, "avg"),
            unpool_case(rng, 2, 28, 32),
            stochastic_case(rng, 2, 28, 32),
        ]
    return [
        max_pool_case(rng, 8, (112, 112), 64, 3, 2, 1, " (ResNet)"),
        max_pool_case(rng, 8, (112, 112), 64, 2, 2, 0, " (VGG)"),
        max_pool_case(rng, 2, (16, 56, 56), 32, 2, 2, 0),
        avg_pool_case(rng, 8, 56, 128, 2, 2, 0, True, " (DenseNet)"),
        avg_pool_case(rng, 8, 28, 192, 3, 1, 1, False, " (Inception)"),
        lp_pool_case(rng, 8, 56, 128, 2.0),
        lp_pool_case(rng, 8, 56, 128, 3.0),
        global_case(rng, 8, 7, 2048, "avg"),
        global_case(rng, 8, 7, 2048, "max"),
        adaptive_case(rng, 8, 56, 64, 7, "avg"),
        adaptive_case(rng, 8, 50, 64, 7, "avg"),
        adaptive_case(rng, 8, 50, 64, 7, "max"),
        indices_case(rng, 8, 112, 64),
        unpool_case(rng, 2, 112, 64),
        stochastic_case(rng, 8, 56, 128),
        maxout_case(rng, 8, 56, 128, 2),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line, runs every case and prints the report."""
    common.main_cases(argv, __doc__, "ops_pool", cases, "Pooling ops", "ref")


if __name__ == "__main__":
    main()
