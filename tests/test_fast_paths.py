"""The fast derivatives of ``cnn_jax.ops.fast`` against ``lax`` and JAX's own rules.

Every fast path computes the same function as the plain ``lax`` program: values and
derivatives (reverse and forward mode, second order) are compared in float64 with the
fast paths on and off (``use_fast_paths``), on a grid of strides, paddings, dilations,
groups and 1-3 spatial dimensions. The kernel-derivative thresholds are lowered in the
tests (``products`` fixture) so that the small shapes here take the per-tap products
that large layers take. Timing is not tested here (``benchmarks/train_step_cpu.py``).
"""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from cnn_jax import ops
from cnn_jax.ops import conv_fast, depthwise_fast, fast, fusion


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def tune(monkeypatch):
    """Sets a tuning constant of a fast-path module for one test.

    The ops' compiled cores are cached per geometry (``jax.jit``), so the caches are
    cleared when a constant changes and again when the test ends.
    """

    def set_constant(module, name, value):
        monkeypatch.setattr(module, name, value)
        jax.clear_caches()

    yield set_constant
    jax.clear_caches()


@pytest.fixture
def products(tune):
    """Every dense kernel derivative through the per-tap products (or im2col)."""
    tune(conv_fast, "TAPS_MIN_CHANNEL_PRODUCT", 0)


def _r(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float64)


def _assert_same(f, args):
    """Fast paths on and off give the same value and gradients (float64).

    Both variants are traced into one jitted program (the switch is read while
    tracing, so each ``with`` block picks its own rules): one compilation per case.
    """

    def loss(*a):
        y = f(*a)
        w = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return jnp.sum(jnp.sin(y) * w)

    value_and_grad = jax.value_and_grad(loss, argnums=tuple(range(len(args))))

    def both(*a):
        with ops.use_fast_paths(True):
            on = value_and_grad(*a)
        with ops.use_fast_paths(False):
            off = value_and_grad(*a)
        return on, off

    (v1, g1), (v0, g0) = jax.jit(both)(*args)
    np.testing.assert_allclose(v1, v0, rtol=1e-10, atol=1e-10)
    for i, (a, b) in enumerate(zip(g1, g0, strict=True)):
        scale = max(float(jnp.max(jnp.abs(b))), 1e-30)
        err = float(jnp.max(jnp.abs(a - b))) / scale
        assert err < 1e-10, f"gradient {i} differs: relative error {err:.1e}"


def _count(f, args, name, enabled):
    """Occurrences of ``name`` in the jaxpr of ``f`` traced with the switch set.

    A new function object is traced every time: JAX caches traces per function, and
    the switch is read only when tracing.
    """
    with ops.use_fast_paths(enabled):
        return str(jax.make_jaxpr(lambda *a: f(*a))(*args)).count(name)


# --------------------------------------------------------------------------- switch


def test_switch_parsing_and_nesting(monkeypatch):
    monkeypatch.delenv(fast.ENV_VAR, raising=False)
    expected = fast.CPU_DEFAULT_YNN if fast.ynn_convolutions() else fast.CPU_DEFAULT
    assert ops.enabled_fast_paths() == (expected if jax.default_backend() == "cpu" else frozenset())
    with ops.use_fast_paths(False):
        assert ops.enabled_fast_paths() == frozenset()
        with ops.use_fast_paths(["conv", "max_pool"]):
            assert ops.enabled_fast_paths() == {"conv", "max_pool"}
            assert fast.fast_path_enabled("conv") and not fast.fast_path_enabled("grouped")
        with ops.use_fast_paths("depthwise, grouped"):
            assert ops.enabled_fast_paths() == {"depthwise", "grouped"}
        assert ops.enabled_fast_paths() == frozenset()
    with ops.use_fast_paths(True):
        assert ops.enabled_fast_paths() == frozenset(ops.FAST_PATHS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", frozenset()),
        ("off", frozenset()),
        ("1", frozenset(fast.FAST_PATHS)),
        ("conv,max_pool", frozenset({"conv", "max_pool"})),
    ],
)
def test_environment_variable(monkeypatch, value, expected):
    monkeypatch.setenv(fast.ENV_VAR, value)
    assert ops.enabled_fast_paths() == expected
    with ops.use_fast_paths("auto"):  # 'auto' defers to the environment
        assert ops.enabled_fast_paths() == expected
    with ops.use_fast_paths(True):  # a block wins over the environment
        assert ops.enabled_fast_paths() == frozenset(fast.FAST_PATHS)


def test_default_follows_the_backend(monkeypatch):
    monkeypatch.delenv(fast.ENV_VAR, raising=False)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert ops.enabled_fast_paths() == frozenset()
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setenv(
        "XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
    )
    assert ops.enabled_fast_paths() == fast.CPU_DEFAULT
    assert "conv" not in fast.CPU_DEFAULT and "depthwise" in fast.CPU_DEFAULT
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    expected = (fast.CPU_DEFAULT - {"unfused_conv"}) | {"conv"}
    assert ops.enabled_fast_paths() == fast.CPU_DEFAULT_YNN == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("", True),
        ("--xla_cpu_use_xnnpack=true", True),
        ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution", False),
        ("--xla_cpu_experimental_ynn_fusion_type=+dot,-individual_convolution", False),
        ("--xla_cpu_experimental_ynn_fusion_type=+dot", True),
        ("--xla_cpu_experimental_ynn_fusion_type=dot", False),  # overwrite: conv not listed
        ("--xla_cpu_experimental_ynn_fusion_type=dot,individual_convolution", True),
        # The last occurrence wins, as in XLA's parser.
        (
            "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution "
            "--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
            True,
        ),
    ],
)
def test_ynn_convolutions_reads_the_flag(flags, expected):
    assert fast.ynn_convolutions(flags) is expected


def test_bad_switch_values(monkeypatch):
    with pytest.raises(ValueError, match=r"enabled.*unknown fast paths.*'convolution'"):  # noqa: SIM117
        with ops.use_fast_paths(["convolution"]):
            pass
    with pytest.raises(TypeError, match="enabled"), ops.use_fast_paths(3):
        pass
    monkeypatch.setenv(fast.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="CNN_JAX_FAST_PATHS"):
        ops.enabled_fast_paths()
    with pytest.raises(ValueError, match="name"):
        fast.fast_path_enabled("pool")


def test_switch_changes_the_program(rng, products):
    x, k = jnp.ones((2, 9, 9, 8)), jnp.ones((3, 3, 8, 8))

    def grad(x, k):
        return jax.grad(lambda k: jnp.sum(ops.conv(x, k, strides=2) ** 2))(k)

    # lax: the forward conv and the kernel-gradient conv; fast: the forward conv only
    # (the kernel gradient is 9 products).
    assert _count(grad, (x, k), "conv_general_dilated", False) == 2
    assert _count(grad, (x, k), "conv_general_dilated", True) == 1
    assert _count(grad, (x, k), "dot_general", True) == 9
    assert _count(grad, (x, k), "conv_general_dilated", ["conv"]) == 1  # one lever
    assert _count(grad, (x, k), "conv_general_dilated", ["max_pool"]) == 2

    def pool_grad(x):
        return jax.grad(lambda x: jnp.sum(ops.max_pool(x, 2) ** 2))(x)

    x = jnp.ones((2, 8, 8, 8))
    assert _count(pool_grad, (x,), "scatter", False) >= 1
    assert _count(pool_grad, (x,), "scatter", True) == 0


def test_switch_is_read_at_trace_time():
    x, k = jnp.ones((1, 6, 6, 8)), jnp.ones((3, 3, 1, 8))

    def f(x, k):
        return ops.depthwise_conv(x, k)

    with ops.use_fast_paths(False):
        lowered_lax = jax.jit(f).lower(x, k).as_text()
    with ops.use_fast_paths(True):
        lowered_fast = jax.jit(lambda x, k: f(x, k)).lower(x, k).as_text()
    assert "convolution" in lowered_lax and "convolution" not in lowered_fast


# --------------------------------------------------------------------------- conv


# (spatial, window, strides, padding, dilation, groups, c_in, c_out)
_PRODUCT_2D = [
    ((7, 6), 3, s, p, d, g, 4, 8)
    for s, p, d, g in itertools.product((1, 2), ("SAME", "VALID", [(1, 2), (0, 1)]), (1, 2), (1, 2))
]
#: A subset of the 2-D product covering every pair of values, plus other shapes.
CONV_GRID = [
    ((7, 6), 3, 1, "SAME", 1, 1, 4, 8),
    ((7, 6), 3, 2, "SAME", 2, 2, 4, 8),
    ((7, 6), 3, 1, "VALID", 2, 2, 4, 8),
    ((7, 6), 3, 2, "VALID", 1, 1, 8, 8),
    ((7, 6), 3, 2, [(1, 2), (0, 1)], 1, 2, 4, 8),
    ((7, 6), 3, 1, [(1, 2), (0, 1)], 2, 1, 8, 8),
    ((7, 6), (1, 1), 2, "VALID", 1, 1, 4, 6),
    ((8, 7), (2, 3), (2, 1), "FULL", (1, 2), 1, 3, 5),
    ((9,), 5, 3, "CAUSAL", 2, 1, 4, 6),
    ((9,), 3, 1, "SAME", 1, 4, 8, 8),
    ((5, 4, 6), 3, (1, 2, 1), "SAME", 1, 1, 4, 6),
    ((5, 4, 6), 2, 2, 1, (2, 1, 1), 2, 4, 6),
]
SLOW_GRID = [c for c in _PRODUCT_2D if c not in CONV_GRID]


def _check_conv(rng, spatial, window, strides, padding, dilation, groups, ci, co):
    n = len(spatial)
    window = (window,) * n if isinstance(window, int) else window
    x, k, b = _r(rng, 2, *spatial, ci), _r(rng, *window, ci // groups, co), _r(rng, co)
    kw = dict(strides=strides, padding=padding, dilation=dilation, groups=groups)
    _assert_same(lambda x, k, b: ops.conv(x, k, b, **kw), (x, k, b))


@pytest.mark.parametrize(
    ("spatial", "window", "strides", "padding", "dilation", "groups", "ci", "co"), CONV_GRID
)
def test_conv_matches_lax(
    x64, products, rng, spatial, window, strides, padding, dilation, groups, ci, co
):
    _check_conv(rng, spatial, window, strides, padding, dilation, groups, ci, co)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spatial", "window", "strides", "padding", "dilation", "groups", "ci", "co"), SLOW_GRID
)
def test_conv_matches_lax_full_grid(
    x64, products, rng, spatial, window, strides, padding, dilation, groups, ci, co
):
    _check_conv(rng, spatial, window, strides, padding, dilation, groups, ci, co)


@pytest.mark.parametrize("by_products", [True, False])
def test_conv_kernel_derivative_choice(x64, rng, tune, by_products):
    """Both kernel derivatives (products and lax's) are exact; the rule picks one."""
    if by_products:
        tune(conv_fast, "TAPS_MIN_CHANNEL_PRODUCT", 0)
    else:
        tune(conv_fast, "TAPS_MIN_CHANNEL_PRODUCT", 10**9)
        tune(conv_fast, "TAPS_LARGE_IMAGE", (10**9, 10**9))
    x, k = _r(rng, 2, 8, 8, 8), _r(rng, 3, 3, 8, 4)
    _assert_same(lambda x, k: ops.conv(x, k, strides=2), (x, k))
    with ops.use_fast_paths(True):
        assert fast.kernel_grad_by_products(x.shape, k.shape, _geometry(2, 1)) == by_products


def _geometry(strides, padding):
    return fast.ConvGeometry((strides,) * 2, ((padding, padding),) * 2, (1, 1), 1, None)


def test_kernel_derivative_rule():
    g = _geometry(1, 1)
    assert fast.kernel_grad_by_products((8, 8, 8, 64), (1, 1, 64, 64), g)  # 1x1: one product
    assert fast.kernel_grad_by_products((8, 7, 7, 256), (3, 3, 256, 256), g)  # many channels
    assert fast.kernel_grad_by_products((8, 32, 32, 16), (3, 3, 16, 16), g)  # large images
    assert not fast.kernel_grad_by_products((8, 8, 8, 64), (3, 3, 64, 64), g)
    assert not fast.kernel_grad_by_products((8, 28, 28, 1), (5, 5, 1, 6), g)


@pytest.mark.parametrize(
    ("spatial", "window", "strides", "padding", "dilation", "mult"),
    [
        ((7, 6), 3, 1, "SAME", 1, 1),
        ((7, 6), 3, 2, "VALID", 1, 2),
        ((8, 7), (2, 3), (2, 1), [(1, 0), (2, 1)], (2, 1), 1),
        ((9,), 5, 2, "CAUSAL", 2, 3),
        ((5, 4, 6), 3, (2, 1, 1), 1, 1, 1),
    ],
)
def test_depthwise_matches_lax(x64, rng, spatial, window, strides, padding, dilation, mult):
    n, c = len(spatial), 3
    window = (window,) * n if isinstance(window, int) else window
    x, k = _r(rng, 2, *spatial, c), _r(rng, *window, 1, c * mult)
    kw = dict(strides=strides, padding=padding, dilation=dilation)
    _assert_same(lambda x, k: ops.depthwise_conv(x, k, **kw), (x, k))
    assert _count(lambda x, k: ops.depthwise_conv(x, k, **kw), (x, k), "conv_general", True) == 0


def test_depthwise_chunk_rule(monkeypatch):
    assert fast.DEPTHWISE_CHUNK_BYTES == 5 * 2**18
    # 10x10x728 float32 (291 KB): 4 of 64 fit in 1.25 MiB; 56x56x128 (1.6 MB): one.
    assert fast.depthwise_chunk((64, 10, 10, 728), 4) == 4
    assert fast.depthwise_chunk((32, 56, 56, 128), 4) == 1
    assert fast.depthwise_chunk((64, 10, 10, 728), 2) == 8  # bfloat16: twice as many
    assert fast.depthwise_chunk((7, 2, 2, 3), 4) == 7  # the whole batch, one step
    monkeypatch.setattr(depthwise_fast, "DEPTHWISE_CHUNK_BYTES", 100)
    assert fast.depthwise_chunk((12, 2, 2, 3), 4) == 2  # 48 B per example
    assert fast.depthwise_chunk((7, 2, 2, 3), 4) == 1  # 7 is prime
    assert fast.depthwise_chunk((5, 9, 9, 9), 4) == 1  # one example over the budget


@pytest.mark.parametrize(
    ("n", "chunk_bytes", "steps"),
    [(6, 2 * 8 * 30 * 3, 3), (5, 1, 5), (4, 10**9, 1)],
    ids=["chunks-of-2", "chunks-of-1", "one-chunk"],
)
@pytest.mark.parametrize("mult", [1, 2])
def test_depthwise_kernel_gradient_loop(x64, rng, tune, n, chunk_bytes, steps, mult):
    """The kernel derivative's loop over chunks of the batch: same values and
    gradients as lax with one, several and single-example chunks, strided and padded,
    and a loop of the expected length (none for one chunk) in the gradient's program."""
    tune(depthwise_fast, "DEPTHWISE_CHUNK_BYTES", chunk_bytes)
    x, k = _r(rng, n, 6, 5, 3), _r(rng, 3, 2, 1, 3 * mult)  # 8 B x 30 x 3 per example

    def op(x, k):
        return ops.depthwise_conv(x, k, strides=(2, 1), padding="SAME")

    _assert_same(op, (x, k))

    def kernel_grad(x, k):
        return jax.grad(lambda k: jnp.sum(jnp.tanh(op(x, k))))(k)

    with ops.use_fast_paths(["depthwise"]):
        jaxpr = str(jax.make_jaxpr(lambda x, k: kernel_grad(x, k))(x, k))
    assert (f"length={steps}" in jaxpr) if steps > 1 else ("scan" not in jaxpr)


@pytest.mark.parametrize("explicit", [False, True])
def test_depthwise_loop_with_a_sharded_batch(rng, tune, explicit):
    """A batch sharded over devices: the loop under XLA's partitioner (Auto axes), the
    plain sum over taps when the sharding is in the types (Explicit axes: JAX can't
    scan over a sharded axis); the same gradients as on one device either way."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from tests.conftest import NUM_CPU_DEVICES

    tune(depthwise_fast, "DEPTHWISE_CHUNK_BYTES", 6 * 6 * 4 * 4 * 2)  # 2 examples
    x = jnp.asarray(rng.standard_normal((2 * NUM_CPU_DEVICES, 6, 6, 4)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 1, 4)), jnp.float32)

    def grads(x, k):
        with ops.use_fast_paths(["depthwise"]):
            return jax.grad(lambda x, k: jnp.sum(jnp.sin(ops.depthwise_conv(x, k))), (0, 1))(x, k)

    ref = jax.jit(grads)(x, k)
    if explicit:
        mesh = jax.make_mesh((NUM_CPU_DEVICES,), ("data",))
    else:
        mesh = Mesh(np.array(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    ks = jax.device_put(k, NamedSharding(mesh, P()))
    out = jax.jit(grads)(xs, ks)
    for a, b in zip(out, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_depthwise_check_grads_in_chunks(x64, rng, tune):
    """Second order, forward and reverse mode, through a loop of three steps."""
    tune(depthwise_fast, "DEPTHWISE_CHUNK_BYTES", 8 * 5 * 4 * 2)
    args = (_r(rng, 3, 5, 4, 2), _r(rng, 3, 3, 1, 4))
    with ops.use_fast_paths(["depthwise"]):
        check_grads(
            jax.jit(lambda x, k: ops.depthwise_conv(x, k, strides=2)),
            args,
            order=2,
            modes=("fwd", "rev"),
        )


def test_separable_conv_matches_lax(x64, products, rng):
    x, dk, pk = _r(rng, 2, 6, 5, 4), _r(rng, 3, 3, 1, 8), _r(rng, 8, 6)
    _assert_same(lambda x, d, p: ops.separable_conv(x, d, p, strides=2), (x, dk, pk))


@pytest.mark.parametrize(
    ("spatial", "window", "strides", "padding", "output_padding", "dilation"),
    [
        ((4, 3), 2, 2, "VALID", 0, 1),
        ((4, 3), 3, 2, 1, 1, 1),
        ((4, 3), (3, 2), (3, 2), [(2, 0), (1, 1)], (2, 1), (1, 2)),
        ((4, 3), 3, 1, "CAUSAL", 0, 2),
        ((5,), 4, 3, 1, 2, 1),
        ((3, 2, 3), 2, 2, 0, (1, 0, 1), 1),
    ],
)
def test_conv_transpose_matches_lax(
    x64, rng, spatial, window, strides, padding, output_padding, dilation
):
    n = len(spatial)
    window = (window,) * n if isinstance(window, int) else window
    y, k, b = _r(rng, 2, *spatial, 6), _r(rng, *window, 4, 6), _r(rng, 4)
    kw = dict(strides=strides, padding=padding, output_padding=output_padding, dilation=dilation)
    _assert_same(lambda y, k, b: ops.conv_transpose(y, k, b, **kw), (y, k, b))


def test_conv_transpose_output_shape_and_groups(x64, rng):
    y, k = _r(rng, 2, 4, 3, 6), _r(rng, 3, 3, 4, 6)
    _assert_same(
        lambda y, k: ops.conv_transpose(y, k, strides=2, padding="SAME", output_shape=(7, 6)),
        (y, k),
    )
    kg = _r(rng, 3, 3, 2, 6)  # groups > 1: the lax program
    _assert_same(lambda y, k: ops.conv_transpose(y, k, strides=2, groups=2), (y, kg))


@pytest.mark.parametrize(
    ("spatial", "window", "padding", "output_padding"),
    [
        ((3, 4), 2, 0, 0),  # U-Net's up-sampling
        ((3, 2), (2, 3), 0, 0),
        ((5,), 4, 0, 0),
        ((2, 3, 2), 2, 0, 0),
        ((3, 3), 2, [(0, 1), (0, 0)], (1, 0)),  # high padding cancelled by output padding
    ],
)
def test_conv_transpose_tiles_matches_lax(x64, rng, spatial, window, padding, output_padding):
    """Kernel == stride: one product and a reshape, no convolution; same values and
    derivatives as ``lax``, second order included."""
    n = len(spatial)
    window = (window,) * n if isinstance(window, int) else window
    y, k, b = _r(rng, 2, *spatial, 6), _r(rng, *window, 4, 6), _r(rng, 4)
    kw = dict(strides=window, padding=padding, output_padding=output_padding)

    def f(y, k, b):
        return ops.conv_transpose(y, k, b, **kw)

    g = fast.TransposeGeometry(
        window, tuple((w - 1, w - 1) for w in window), (0,) * n, (1,) * n, None, 1
    )
    assert fast.tiles_output(window, g)
    assert _count(f, (y, k, b), "conv_general_dilated", ["conv_transpose_tiles"]) == 0
    assert _count(f, (y, k, b), "conv_general_dilated", ["conv_transpose"]) == 1
    _assert_same(f, (y, k, b))
    with ops.use_fast_paths(["conv_transpose_tiles"]):
        check_grads(jax.jit(f), (y, k, b), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize(
    "kw",
    [
        dict(strides=2),  # 3x3 kernel, stride 2: overlapping taps
        dict(strides=2, padding=1),
        dict(strides=2, dilation=2),
        dict(strides=2, output_padding=1),  # an extra row and column of zeros
        dict(strides=1),
    ],
)
def test_conv_transpose_tiles_only_when_tiling(x64, rng, kw):
    window = 2 if kw.get("dilation") or kw.get("output_padding") or kw["strides"] == 1 else 3
    y, k = _r(rng, 1, 3, 3, 4), _r(rng, window, window, 2, 4)

    def f(y, k):
        return ops.conv_transpose(y, k, **kw)

    assert _count(f, (y, k), "conv_general_dilated", ["conv_transpose_tiles"]) == 1
    _assert_same(f, (y, k))


# --------------------------------------------------------------------------- check_grads


@pytest.mark.parametrize(
    ("op", "shapes", "order"),
    [
        (lambda x, k: ops.conv(x, k, strides=2, padding="SAME"), ((1, 5, 4, 4), (3, 3, 4, 4)), 2),
        (lambda x, k: ops.conv(x, k, dilation=2, groups=2), ((1, 6, 5, 4), (2, 2, 2, 4)), 1),
        (lambda x, k: ops.depthwise_conv(x, k, strides=2), ((1, 5, 4, 2), (3, 3, 1, 4)), 1),
        (
            lambda y, k: ops.conv_transpose(y, k, strides=2, padding=1),
            ((1, 3, 3, 4), (3, 3, 2, 4)),
            2,
        ),
        (
            lambda x, k: ops.conv(x, k, strides=2, padding="SAME", dilation=(2, 1)),
            ((1, 6, 5, 3), (3, 2, 3, 2)),
            2,
        ),
    ],
    ids=["conv", "grouped", "depthwise", "conv_transpose", "small_input"],
)
def test_check_grads(x64, products, rng, op, shapes, order):
    """Forward and reverse mode (the rules are custom JVPs), to second order for the
    custom rules (grouped: the dense rule batched; depthwise: plain ``jnp`` code;
    small_input: products forward, lax's derivatives)."""
    args = tuple(_r(rng, *s) for s in shapes)
    with ops.use_fast_paths(True):
        check_grads(jax.jit(op), args, order=order, modes=("fwd", "rev"))


def test_check_grads_max_pool(x64, rng):
    # Distinct values 1 apart: no finite-difference step crosses a change of arg-max.
    x = jnp.asarray(rng.permutation(2 * 6 * 7 * 8).reshape(2, 6, 7, 8), jnp.float64)
    with ops.use_fast_paths(True):
        check_grads(
            jax.jit(lambda v: ops.max_pool(v, 2, padding=1, ceil_mode=True)),
            (x,),
            order=2,
            eps=1e-3,
        )


def test_vmap_and_float32(rng, products):
    x = jnp.asarray(rng.standard_normal((3, 2, 8, 8, 8)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 8, 16)), jnp.float32)

    def loss(x, k):
        return jnp.sum(jax.vmap(lambda v: ops.conv(v, k, strides=2))(x) ** 2)

    grads = []
    for enabled in (True, False):
        with ops.use_fast_paths(enabled):
            grads.append(jax.jit(jax.grad(loss, argnums=(0, 1)))(x, k))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * float(jnp.max(jnp.abs(b))))


# --------------------------------------------------------------------------- materialize


def test_materialize_only_under_differentiation(rng):
    x, k = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))

    def fwd(x, k):
        return ops.conv(jax.nn.relu(x), k)

    def grad(x, k):
        return jax.grad(lambda x, k: jnp.sum(fwd(x, k) ** 2), argnums=(0, 1))(x, k)

    def tgrad(y, k):
        def loss(y, k):
            return jnp.sum(ops.conv_transpose(jnp.tanh(y), k, strides=2) ** 2)

        return jax.grad(loss, argnums=(0, 1))(y, k)

    def kernel_grad_only(x, k):  # the input is not differentiated: nothing to store
        return jax.grad(lambda k: jnp.sum(fwd(x, k) ** 2))(k)

    assert _count(fwd, (x, k), "while", ["materialize"]) == 0  # inference: no cost
    assert _count(grad, (x, k), "while", ["materialize"]) == 1
    assert _count(grad, (x, k), "while", False) == 0
    assert _count(kernel_grad_only, (x, k), "while", ["materialize"]) == 0
    assert _count(tgrad, (x, k), "while", ["materialize"]) == 1
    assert _count(tgrad, (x, k), "while", ["conv_transpose", "materialize"]) == 1
    dw = (jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 1, 4)))
    depthwise_grad = jax.grad(lambda x, k: jnp.sum(ops.depthwise_conv(x, k) ** 2), argnums=(0, 1))
    assert _count(depthwise_grad, dw, "while", ["depthwise", "materialize"]) == 0
    # XLA keeps the loop (the fusion boundary) in the compiled program.
    with ops.use_fast_paths(["materialize"]):
        compiled = jax.jit(lambda x, k: grad(x, k)).lower(x, k).compile().as_text()
    assert "while" in compiled


def test_materialized_is_the_identity():
    special = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2.25, 1e-45]
    for first in (np.nan, -0.0, 3.0):
        x = np.array([first, *special], np.float32).reshape(3, 3)
        y = np.asarray(jax.jit(fusion._materialized)(jnp.asarray(x)))
        np.testing.assert_array_equal(np.signbit(y), np.signbit(x))
        np.testing.assert_array_equal(y, x)  # NaN == NaN for assert_array_equal
    empty = jnp.zeros((0, 3))
    assert fusion._materialized(empty).shape == (0, 3)
    for other in (jnp.arange(6).reshape(2, 3), jnp.array([True, False]), jnp.array([1 + 2j])):
        np.testing.assert_array_equal(jax.jit(fusion._materialized)(other), other)
    half = np.asarray(jnp.asarray(x, jnp.bfloat16))
    out = np.asarray(jax.jit(fusion._materialized)(jnp.asarray(half)))
    np.testing.assert_array_equal(out.view(np.uint16), half.view(np.uint16))  # bit for bit


@pytest.mark.parametrize(
    ("op", "shapes"),
    [
        (
            lambda x, k: ops.conv(jnp.tanh(x), k, strides=2, padding="SAME"),
            ((2, 6, 5, 3), (3, 3, 3, 4)),
        ),
        (lambda x, k: ops.conv(x, k, groups=2), ((1, 6, 5, 4), (2, 2, 2, 4))),
        (lambda y, k: ops.conv_transpose(y, k, strides=2), ((1, 3, 3, 4), (3, 3, 2, 4))),
    ],
    ids=["conv", "grouped", "conv_transpose"],
)
def test_materialize_matches_lax(x64, rng, op, shapes):
    """The stored input changes no value or derivative: exact agreement, and second-order
    forward and reverse derivatives (the loop itself is never differentiated)."""
    args = tuple(_r(rng, *s) for s in shapes)

    def loss(*a):
        return jnp.sum(jnp.sin(op(*a)))

    results = []
    for enabled in (["materialize"], False):
        with ops.use_fast_paths(enabled):
            results.append(jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(*args))
    (v1, g1), (v0, g0) = results
    assert float(v1) == float(v0)
    for a, b in zip(g1, g0, strict=True):
        np.testing.assert_array_equal(a, b)
    with ops.use_fast_paths(["materialize"]):
        check_grads(jax.jit(op), args, order=2, modes=("fwd", "rev"))
        hessian = jax.jit(jax.hessian(loss))(*args)
    with ops.use_fast_paths(False):
        expected = jax.jit(jax.hessian(loss))(*args)
    np.testing.assert_allclose(hessian, expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- unfused_conv


def _ynn_fusions_with_convolution(hlo: str) -> int:
    """YNNPACK fusions of an optimized HLO module that compute a convolution."""
    bodies = dict(re.findall(r"^(%[\w.-]+) \(.*?\{\n(.*?)\n\}", hlo, re.M | re.S))
    calls = re.findall(r"fusion\(.*calls=(%[\w.-]+).*\"kind\":\"__ynn_fusion\"", hlo)
    return sum(" convolution(" in bodies[c] for c in calls)


def test_unfused_conv_only_without_differentiation():
    x, k = jnp.ones((2, 8, 8, 20)), jnp.ones((3, 3, 20, 20))
    on, name = ["unfused_conv"], "reduce_precision"

    def grad(x, k):
        return jax.grad(lambda x, k: jnp.sum(ops.conv(x, k) ** 2), argnums=(0, 1))(x, k)

    assert _count(ops.conv, (x, k), name, on) == 1
    assert _count(ops.conv, (x, k), name, False) == 0
    assert _count(grad, (x, k), name, on) == 0  # training: the program is unchanged
    half = (x.astype(jnp.bfloat16), k.astype(jnp.bfloat16))
    assert _count(ops.conv, half, name, on) == 0  # float32 only
    grouped = (x, jnp.ones((3, 3, 10, 20)))
    assert _count(lambda x, k: ops.conv(x, k, groups=2), grouped, name, on) == 1
    assert _count(lambda x, k: ops.conv(x, k, groups=2), grouped, name, [*on, "grouped"]) == 1
    assert _count(ops.conv, (x, k), name, [*on, "conv"]) == 1
    dw = (x, jnp.ones((3, 3, 1, 20)))
    assert _count(ops.depthwise_conv, dw, name, on) == 1  # a lax convolution
    assert _count(ops.depthwise_conv, dw, name, [*on, "depthwise"]) == 0  # none
    first = (jnp.ones((2, 8, 8, 1)), jnp.ones((3, 3, 1, 32)))
    assert _count(ops.conv, first, name, on) == 1
    assert _count(ops.conv, first, name, [*on, "small_input"]) == 0  # no convolution
    # Convolutions YNNPACK cannot take get nothing (no cost where there is no gain).
    assert _count(ops.conv, (jnp.ones((2, 8, 8, 16)), jnp.ones((3, 3, 16, 16))), name, on) == 0
    assert _count(ops.conv, (jnp.ones((2, 9, 20)), jnp.ones((3, 20, 20))), name, on) == 0  # 1-D
    for strides, expected in ((2, 0), (1, 1)):  # a strided transposed one is zero-dilated
        for extra in ([], ["conv_transpose"]):
            f = lambda y, k, s=strides: ops.conv_transpose(y, k, strides=s, padding="SAME")  # noqa: E731
            assert _count(f, (x, jnp.ones((2, 2, 20, 20))), name, [*on, *extra]) == expected


def test_ynn_could_take_rule():
    take = fast.ynn_could_take
    assert take((8, 16, 16, 24), (8, 16, 16, 64), (3, 3), False)
    assert take((8, 16, 16, 3), (8, 16, 16, 17), (3, 3), False)  # max(C_in, C_out) > 16
    assert not take((8, 16, 16, 16), (8, 16, 16, 16), (3, 3), False)
    assert not take((8, 16, 16, 24), (8, 16, 16, 64), (3, 3), True)  # zero-dilated input
    assert not take((8, 16, 24), (8, 16, 64), (3,), False)  # 1-D
    assert not take((8, 4, 4, 4, 24), (8, 4, 4, 4, 64), (3, 3, 3), False)  # 3-D
    assert not take((8, 16, 16, 24), (8, 18, 18, 64), (3, 3), False)  # FULL padding
    assert not take((8, 2, 16, 24), (8, 2, 16, 64), (3, 3), False)  # window > input


def test_unfused_conv_is_the_identity():
    rng = np.random.default_rng(0)
    special = np.array(
        [
            0,
            0x80000000,
            0x7F800000,
            0xFF800000,
            0x7FC00001,
            0x7F800001,
            0xFFC12345,
            1,
            0x807FFFFF,
            0x00800000,
        ],
        np.uint32,
    )
    bits = np.concatenate(
        [special, rng.integers(0, 2**32, 2**16, dtype=np.uint64).astype(np.uint32)]
    )
    x = jax.lax.bitcast_convert_type(jnp.asarray(bits), jnp.float32)
    y = jax.jit(fusion._unfused)(x)
    np.testing.assert_array_equal(np.asarray(jax.lax.bitcast_convert_type(y, jnp.uint32)), bits)


def test_unfused_conv_matches_lax(rng):
    """Values bit for bit in inference; derivatives (forward and reverse) bit for bit."""
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 20)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 20, 24)), jnp.float32)
    t = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)

    def net(x, k):  # a convolution whose only user is a max pool: YNNPACK's pattern
        return ops.max_pool(jax.nn.relu(ops.conv(x, k)), 2)

    results = []
    for enabled in (["unfused_conv"], False):
        with ops.use_fast_paths(enabled):
            value = jax.jit(lambda x, k: net(x, k))(x, k)
            tangent = jax.jit(lambda x, k, t: jax.jvp(lambda x: net(x, k), (x,), (t,)))(x, k, t)
            grads = jax.jit(jax.grad(lambda x, k: jnp.sum(net(x, k) ** 2), argnums=(0, 1)))(x, k)
        results.append((value, *tangent, *grads))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unfused_conv_keeps_convolutions_out_of_ynnpack(rng):
    """The compiled inference program computes its convolutions outside YNNPACK.

    Without the boundary, this jaxlib (0.10) fuses the convolution into the YNNPACK
    fusion of the max pool and batch norm that consume it; the test checks that first
    where the installed jaxlib does so.
    """
    x = jnp.asarray(rng.standard_normal((8, 16, 16, 32)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 32, 64)), jnp.float32)
    scale = jnp.linspace(0.5, 1.5, 64)

    def net(x, k):
        return ops.max_pool(ops.conv(x, k), 2) * scale + 0.1

    hlo = {}
    for key, enabled in (("on", ["unfused_conv"]), ("off", False)):
        with ops.use_fast_paths(enabled):
            hlo[key] = jax.jit(lambda x, k: net(x, k)).lower(x, k).compile().as_text()
    assert "reduce-precision" in hlo["on"]
    assert " convolution(" in hlo["on"]  # still a convolution: XLA's own
    assert _ynn_fusions_with_convolution(hlo["on"]) == 0
    if "__ynn_fusion" not in hlo["off"]:
        pytest.skip("this jaxlib makes no YNNPACK fusions: nothing to keep out")
    assert _ynn_fusions_with_convolution(hlo["off"]) == 1


@pytest.mark.parametrize(
    ("x_shape", "k_shape", "padding"),
    [
        ((8, 16, 16, 16), (3, 3, 16, 16), "SAME"),  # 16 channels
        ((8, 16, 16, 32), (3, 3, 32, 64), "SAME"),  # YNNPACK's pattern (the control)
        ((8, 16, 16, 32), (3, 3, 32, 64), "FULL"),  # output larger than the input
        ((8, 32, 32), (3, 32, 64), "SAME"),  # 1-D
    ],
)
def test_ynn_could_take_matches_the_compiler(rng, x_shape, k_shape, padding):
    """``ynn_could_take`` says which convolutions this jaxlib pulls into YNNPACK's fusions.

    ``unfused_conv`` adds its boundary only where the rule says YNNPACK could take the
    convolution. The rule is a copy of jaxlib 0.10's: compiled without the boundary, a
    convolution whose only user is a max pool ends in a YNNPACK fusion exactly when the
    rule says so (a later jaxlib that takes more convolutions fails here; one that takes
    none, or makes no YNNPACK fusions at all, skips the control case).
    """
    if fast.ynn_convolutions():
        pytest.skip(
            "XLA_FLAGS leave lone convolutions to YNNPACK (jaxlib's default): the rule "
            "is checked under cnn_jax's flag"
        )
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(k_shape), jnp.float32)
    n = x.ndim - 2

    def net(x, k):
        return ops.max_pool(ops.conv(x, k, padding=padding), 2) * 1.5 + 0.1

    with ops.use_fast_paths(False):
        y_shape = jax.eval_shape(lambda x, k: ops.conv(x, k, padding=padding), x, k).shape
        hlo = jax.jit(net).lower(x, k).compile().as_text()
    expected = fast.ynn_could_take(x.shape, y_shape, k.shape[:n], False)
    if expected and "__ynn_fusion" not in hlo:
        pytest.skip("this jaxlib makes no YNNPACK fusions")
    assert _ynn_fusions_with_convolution(hlo) == int(expected)


# --------------------------------------------------------------------------- max pool


@pytest.mark.parametrize(
    ("shape", "window", "padding", "ceil_mode"),
    [
        ((2, 7, 9, 8), 2, 0, False),
        ((2, 7, 9, 8), 2, 1, True),
        ((2, 6, 6, 8), 3, 1, False),
        ((2, 5, 7, 8), (2, 3), [(1, 0), (0, 2)], True),
        ((1, 4, 5, 6, 8), 2, 1, True),
    ],
)
def test_max_pool_matches_gather(x64, rng, shape, window, padding, ceil_mode):
    """Ties (small integers), NaNs and -inf: the same arg-max as the gather rule."""
    x = rng.integers(0, 3, shape).astype(np.float64)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 3, replace=False)] = np.nan
    flat[rng.choice(flat.size, 3, replace=False)] = -np.inf
    x, t = jnp.asarray(x), _r(rng, *shape)

    def f(v):
        return ops.max_pool(v, window, padding=padding, ceil_mode=ceil_mode)

    out = jax.eval_shape(f, x)
    ct = jnp.cos(jnp.arange(out.size, dtype=x.dtype)).reshape(out.shape)

    def both(x, t, ct):
        results = []
        for enabled in (True, False):
            with ops.use_fast_paths(enabled):
                y, ty = jax.jvp(f, (x,), (t,))
                results.append((y, ty, jax.vjp(f, x)[1](ct)[0]))
        return results

    on, off = jax.jit(both)(x, t, ct)
    for a, b in zip(on, off, strict=True):
        np.testing.assert_array_equal(a, b)


def test_max_pool_fast_path_applies():
    from cnn_jax.ops.geometry import pool_geometry as _geometry

    x = jnp.ones((1, 8, 8, 16))
    assert fast.max_pool_fast_applies(_geometry(x, 2, None, "VALID", 1, False), 16)
    assert not fast.max_pool_fast_applies(_geometry(x, 3, 2, 1, 1, False), 16)  # overlapping
    assert not fast.max_pool_fast_applies(_geometry(x, 2, None, 0, 2, False), 16)  # dilated
    assert not fast.max_pool_fast_applies(_geometry(x, 2, None, 0, 1, False), 4)  # few channels


def test_env_var_is_documented():
    assert fast.ENV_VAR == "CNN_JAX_FAST_PATHS"
    assert fast.ENV_VAR in (fast.__doc__ or "")


def test_one_input_channel_is_a_dense_convolution():
    """``groups == C_in == 1`` is a dense convolution (not the depthwise path): the
    broadcast products with ``small_input``, ``lax`` without."""
    x, k = jnp.ones((2, 8, 8, 1)), jnp.ones((5, 5, 1, 6))
    without = [p for p in fast.FAST_PATHS if p != "small_input"]
    assert _count(ops.conv, (x, k), "conv_general_dilated", without) == 1
    assert _count(ops.conv, (x, k), "conv_general_dilated", True) == 0
    assert _count(ops.conv, (x, k), "while", True) == 1  # the stored result
    assert _count(ops.conv, (x, k), "while", without) == 0


# --------------------------------------------------------------------------- small input


def test_small_input_rule():
    g = _geometry(1, 0)
    assert fast.small_input((256, 32, 32, 1), (5, 5, 1, 6), g)  # LeNet-5's first layer
    assert fast.small_input((128, 32, 32, 3), (3, 3, 3, 16), g)  # ResNet-20's
    assert fast.small_input((256, 32, 32, 3), (2, 2, 3, 24), g)  # airbench94's whitening
    assert not fast.small_input((256, 14, 14, 6), (5, 5, 6, 16), g)  # 6 channels
    assert not fast.small_input((8, 224, 224, 3), (7, 7, 3, 64), g)  # 147 products
    assert not fast.small_input((8, 32, 32, 3), (5, 5, 3, 8), g)  # 75 products
    grouped = fast.ConvGeometry((1, 1), ((0, 0),) * 2, (1, 1), 3, None)
    assert not fast.small_input((8, 32, 32, 3), (3, 3, 1, 6), grouped)


# (spatial, window, strides, padding, dilation, c_in, c_out)
SMALL_INPUT_GRID = [
    ((9, 8), 5, 1, "VALID", 1, 1, 6),
    ((7, 6), 3, 2, "SAME", 1, 3, 4),
    ((8, 7), (2, 3), (2, 1), [(1, 0), (2, 1)], (2, 1), 2, 5),
    ((8, 7), 2, 1, "FULL", 1, 3, 2),
    ((11,), 5, 1, "CAUSAL", 2, 1, 3),
    ((5, 4, 6), 3, (1, 2, 1), "SAME", 1, 1, 2),
]


@pytest.mark.parametrize(
    ("spatial", "window", "strides", "padding", "dilation", "ci", "co"), SMALL_INPUT_GRID
)
def test_small_input_matches_lax(x64, rng, spatial, window, strides, padding, dilation, ci, co):
    n = len(spatial)
    window = (window,) * n if isinstance(window, int) else window
    x, k, b = _r(rng, 2, *spatial, ci), _r(rng, *window, ci, co), _r(rng, co)
    kw = dict(strides=strides, padding=padding, dilation=dilation)

    def f(x, k, b):
        return ops.conv(x, k, b, **kw)

    assert fast.small_input(x.shape, k.shape, _geometry(1, 0))
    _assert_same(f, (x, k, b))
    # The forward program is the broadcast products (the derivatives are lax's).
    assert _count(f, (x, k, b), "conv_general_dilated", ["small_input"]) == 0
    assert _count(f, (x, k, b), "conv_general_dilated", False) == 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_small_input_low_precision(rng, dtype):
    """Products accumulated in float32, like lax's convolution: float32 and bfloat16
    agree with lax to their rounding, and keep their dtype."""
    x = jnp.asarray(rng.standard_normal((4, 16, 16, 3)), dtype)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 8)), dtype)
    results = []
    for enabled in (["small_input"], False):
        with ops.use_fast_paths(enabled):
            results.append(jax.jit(lambda x, k: ops.conv(x, k, padding="SAME"))(x, k))
    fast_y, lax_y = results
    assert fast_y.dtype == lax_y.dtype == dtype
    exact = ops.conv(x.astype(jnp.float32), k.astype(jnp.float32), padding="SAME")
    tol = 1e-5 if dtype == jnp.float32 else 1e-2
    scale = float(jnp.max(jnp.abs(exact)))
    for y in (fast_y, lax_y):
        assert float(jnp.max(jnp.abs(y.astype(jnp.float32) - exact))) <= tol * scale


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8])
def test_integer_convolutions_are_lax(dtype):
    """The broadcast-product paths add up in float32; integers must keep lax's exact
    sums in the wide integer type: 2**24 + 1 survives, and int8 100 * 2 is 200 (not
    the float path's saturated 127; cast back to int8 it wraps to -56)."""
    wide = jax.dtypes.canonicalize_dtype(np.int64)
    big = 2**24 + 1 if dtype == jnp.int32 else 100
    w = 1 if dtype == jnp.int32 else 2
    cases = [
        (jnp.full((1, 4, 1), big, dtype), jnp.full((1, 1, 1), w, dtype), 1),  # small_input
        (jnp.full((1, 4, 2), big, dtype), jnp.full((1, 1, 2), w, dtype), 2),  # depthwise
    ]
    for x, k, groups in cases:
        with ops.use_fast_paths(False):
            expected = np.asarray(ops.conv(x, k, groups=groups))
        for enabled in (True, "auto"):
            with ops.use_fast_paths(enabled):
                got = ops.conv(x, k, groups=groups)
            assert got.dtype == wide
            np.testing.assert_array_equal(np.asarray(got), expected)
        assert expected[0, 0, 0] == big * w
        assert expected.astype(np.dtype(dtype))[0, 0, 0] == (big * w if dtype == jnp.int32 else -56)
    # The tiled transposed convolution (kernel == stride) is a product in float32 too.
    y, k = jnp.full((1, 2, 2), big, dtype), jnp.full((2, 3, 2), w, dtype)
    with ops.use_fast_paths(False):
        expected = np.asarray(ops.conv_transpose(y, k, strides=2))
    with ops.use_fast_paths(True):
        np.testing.assert_array_equal(np.asarray(ops.conv_transpose(y, k, strides=2)), expected)
