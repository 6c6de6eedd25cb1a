"""``cnn_jax.ops.loop_conv``: convolutions whose derivatives stay canonical inside loops.

The canonical kernel and input gradients are compared in float64 with ``lax``'s own
VJP on a grid of 1-3 spatial dimensions, strides, dilations and paddings; ``ops.conv``
inside ``loop_body`` with the loop's derivatives (reverse mode to second order,
forward-over-reverse, vmap, inside ``lax.scan``) against the plain ``lax`` program, and
plain forward mode a ``TypeError``; the gradient program of a
scanned convolution is checked to hold only canonical convolutions (what keeps XLA:CPU
on its Eigen kernels); the pre-activation ResNet's scanned stages against the unrolled
net. Timing is not tested here (docs/ENGINEERING.md, "Convolutions inside loops").
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from cnn_jax import ops
from cnn_jax.ops import fast_paths, loop_conv
from cnn_jax.ops.geometry import Geometry, dimension_numbers


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _r(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float64)


def _lax(x, w, g):
    return lax.conv_general_dilated(
        x,
        w,
        g.strides,
        g.padding,
        rhs_dilation=g.dilation,
        dimension_numbers=dimension_numbers(x.ndim - 2),
    )


def _close(a, b, tol=1e-12):
    scale = max(float(jnp.max(jnp.abs(b))), 1e-30)
    err = float(jnp.max(jnp.abs(a - b))) / scale
    assert err < tol, f"relative error {err:.1e}"


GRID = [
    # (spatial, window, strides, dilation, padding)
    ((7,), (3,), (1,), (1,), ((1, 1),)),
    ((9,), (2,), (3,), (2,), ((0, 2),)),
    ((6, 5), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1))),
    ((8, 7), (3, 2), (2, 1), (1, 2), ((1, 0), (0, 2))),
    ((9, 9), (3, 3), (2, 2), (2, 2), ((0, 0), (3, 1))),
    ((6, 6), (1, 1), (2, 2), (1, 1), ((0, 0), (0, 0))),
    ((5, 6, 4), (2, 3, 2), (1, 2, 1), (1, 1, 2), ((1, 0), (1, 1), (0, 2))),
]


@pytest.mark.parametrize("spatial, window, strides, dilation, padding", GRID)
def test_canonical_kernel_grad_is_laxs(x64, rng, spatial, window, strides, dilation, padding):
    g = Geometry(strides, padding, dilation)
    x, w = _r(rng, 2, *spatial, 3), _r(rng, *window, 3, 4)
    y, vjp = jax.vjp(lambda k: _lax(x, k, g), w)
    dy = _r(rng, *y.shape)
    _close(loop_conv.canonical_kernel_grad(x, dy, window, g), vjp(dy)[0])


@pytest.mark.parametrize(
    "spatial, window, dilation, padding",
    [
        ((7,), (3,), (1,), ((1, 1),)),
        ((8,), (3,), (2,), ((4, 0),)),
        ((6, 5), (3, 3), (1, 1), ((1, 1), (1, 1))),
        ((6, 7), (3, 2), (1, 2), ((0, 2), (2, 0))),
        ((5, 6, 4), (2, 3, 2), (1, 1, 2), ((1, 0), (0, 0), (2, 2))),
    ],
)
def test_canonical_input_grad_is_laxs(x64, rng, spatial, window, dilation, padding):
    g = Geometry((1,) * len(spatial), padding, dilation)
    x, w = _r(rng, 2, *spatial, 3), _r(rng, *window, 3, 4)
    y, vjp = jax.vjp(lambda v: _lax(v, w, g), x)
    dy = _r(rng, *y.shape)
    _close(loop_conv.canonical_input_grad(dy, w, spatial, g), vjp(dy)[0])


CASES = [
    ((2, 7, 6, 3), (3, 3, 3, 4), {"padding": "SAME"}),
    ((2, 9, 8, 3), (3, 2, 3, 2), {"strides": 2, "padding": 1, "dilation": (2, 1)}),
    ((2, 6, 6, 4), (1, 1, 4, 5), {}),
    ((2, 8, 3), (5, 3, 2), {"padding": ((6, 0),)}),  # padding past the kernel: lax's input rule
    ((1, 4, 5, 4, 2), (2, 2, 3, 2, 3), {"padding": "SAME", "dilation": (1, 2, 1)}),
]


def _loss(op):
    def loss(x, w):
        y = op(x, w)
        weights = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return jnp.sum(jnp.sin(y) * weights)

    return loss


@pytest.mark.parametrize("x_shape, w_shape, kw", CASES)
def test_conv_in_a_loop_body_matches_lax(x64, rng, x_shape, w_shape, kw):
    x, w = _r(rng, *x_shape), _r(rng, *w_shape)
    value_and_grad = jax.value_and_grad(_loss(lambda a, b: ops.conv(a, b, **kw)), (0, 1))

    def both(x, w):
        with fast_paths.use_fast_paths(True), fast_paths.loop_body():
            on = value_and_grad(x, w)
        with fast_paths.use_fast_paths(False):
            off = value_and_grad(x, w)
        return on, off

    with fast_paths.use_fast_paths(True), fast_paths.loop_body():  # loop_conv is taken
        assert "custom_vjp_call" in str(jax.make_jaxpr(lambda a, b: ops.conv(a, b, **kw))(x, w))
    (v1, g1), (v0, g0) = jax.jit(both)(x, w)
    np.testing.assert_allclose(v1, v0, rtol=1e-12)
    for a, b in zip(g1, g0, strict=True):
        _close(a, b)


@pytest.mark.parametrize(
    "dtype, tol", [(jnp.bfloat16, 2e-2), (jnp.float16, 4e-3), (jnp.complex64, 1e-5)]
)
def test_loop_conv_in_low_precision_and_complex(rng, dtype, tol):
    x = jnp.asarray(rng.standard_normal((2, 7, 6, 5)) + 0.5j * rng.standard_normal((2, 7, 6, 5)))
    w = jnp.asarray(rng.standard_normal((3, 3, 5, 4)) + 0.5j * rng.standard_normal((3, 3, 5, 4)))
    if not jnp.issubdtype(dtype, jnp.complexfloating):
        x, w = x.real, w.real
    x, w = x.astype(dtype), w.astype(dtype)

    def grads(on):
        def f(x, w):
            y = ops.conv(x, w, padding="SAME")
            return jnp.sum(jnp.real(y * jnp.conj(y)).astype(jnp.float32))

        with fast_paths.use_fast_paths(on), fast_paths.loop_body():
            return jax.jit(jax.grad(f, (0, 1)))(x, w)

    for a, b in zip(grads(True), grads(False), strict=True):
        assert a.dtype == b.dtype == dtype
        a64, b64 = (np.asarray(v.astype(jnp.complex64)).astype(np.complex128) for v in (a, b))
        assert np.max(np.abs(a64 - b64)) <= tol * np.max(np.abs(b64))


def test_grouped_and_integer_convolutions_keep_their_paths_in_a_loop_body(rng):
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)
    with fast_paths.use_fast_paths(True), fast_paths.loop_body():
        grouped = jax.make_jaxpr(lambda x, w: ops.conv(x, w, groups=2, padding="SAME"))(x, w)
        xi = jnp.asarray(rng.integers(-3, 3, (1, 5, 5, 2)), jnp.int32)
        wi = jnp.asarray(rng.integers(-3, 3, (3, 3, 2, 2)), jnp.int32)
        got = ops.conv(xi, wi, padding="VALID")
    assert "custom_vjp_call" not in str(grouped)
    want = lax.conv_general_dilated(
        np.asarray(xi, np.int64),
        np.asarray(wi, np.int64),
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_traces_inside_and_outside_a_loop_body_are_cached_apart(rng):
    """An eager gradient inside the block, then forward mode outside it on the same
    shapes: the outside call must not reuse the inside trace (a custom_vjp)."""
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 4, 4)), jnp.float32)

    def f(x, w):
        return jnp.sum(ops.conv(x, w, padding="SAME") ** 2)

    with fast_paths.use_fast_paths(True):
        with fast_paths.loop_body():
            inside = jax.grad(f, 1)(x, w)
        _, tangent = jax.jvp(f, (x, w), (x, w))  # would raise on the loop trace
        outside = jax.grad(f, 1)(x, w)
    np.testing.assert_allclose(np.asarray(inside), np.asarray(outside), rtol=1e-5, atol=1e-4)
    assert np.isfinite(float(tangent))


@pytest.mark.parametrize("x_shape, w_shape, kw", CASES[:3])
def test_loop_conv_check_grads_second_order(x64, rng, x_shape, w_shape, kw):
    """Reverse mode to second order (the backward pass is plain convolutions)."""
    args = (_r(rng, *x_shape), _r(rng, *w_shape))

    def f(x, w):
        with fast_paths.use_fast_paths(True), fast_paths.loop_body():
            return ops.conv(x, w, **kw)

    check_grads(jax.jit(f), args, order=2, modes=("rev",))


def test_forward_over_reverse_works_and_plain_forward_mode_is_a_type_error(x64, rng):
    x, w = _r(rng, 2, 6, 5, 3), _r(rng, 3, 3, 3, 4)  # 3 channels: small_input's outside

    def loss(on):
        def f(x, w):
            with fast_paths.use_fast_paths(on), fast_paths.loop_body():
                return jnp.sum(jnp.sin(ops.conv(x, w, padding="SAME")))

        return f

    tangents = (_r(rng, *x.shape), _r(rng, *w.shape))
    hvp = [jax.jvp(jax.grad(loss(on), (0, 1)), (x, w), tangents)[1] for on in (True, False)]
    for a, b in zip(*hvp, strict=True):
        _close(a, b)
    with pytest.raises(TypeError, match="forward-mode") as info:
        jax.jvp(loss(True), (x, w), tangents)
    assert "inside cnn_jax.ops.loop_body()" in str(info.value)
    assert "without 'loop_conv'" in str(info.value)  # the way out
    assert "custom_vjp function" in str(info.value.__cause__)  # JAX's own, chained
    with pytest.raises(TypeError) as nested, fast_paths.loop_body():
        jax.jvp(loss(True), (x, w), tangents)  # two blocks: explained once
    assert str(nested.value).count("loop_body()") == str(info.value).count("loop_body()")
    # Other TypeErrors raised inside the block pass through unchanged.
    with pytest.raises(TypeError, match=r"^unrelated$"), fast_paths.loop_body():
        raise TypeError("unrelated")


def test_loop_conv_under_vmap_and_scan_in_float32(rng):
    x = jnp.asarray(rng.standard_normal((3, 2, 6, 6, 4)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 4, 4)) * 0.3, jnp.float32)

    def grads(loop):
        with fast_paths.use_fast_paths(loop), fast_paths.loop_body():

            def run(xi, kk):
                body = lambda h, kt: (jnp.tanh(ops.conv(h, kt, padding="SAME")), None)  # noqa: E731
                return lax.scan(body, xi, kk)[0].sum()

            dx = jax.vmap(jax.grad(run), in_axes=(0, None))(x, k)
            dk = jax.grad(run, 1)(x[0], k)
        return dx, dk

    on, off = jax.jit(lambda: grads(True))(), jax.jit(lambda: grads(False))()
    for a, b in zip(on, off, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)


def _convs(jaxpr):
    """Every conv_general_dilated equation of a jaxpr, sub-jaxprs (scan bodies) included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(eqn)
        for value in eqn.params.values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(item, "jaxpr", item)
                if hasattr(inner, "eqns"):
                    found += _convs(inner)
    return found


def _convs_in_loops(jaxpr):
    """The conv_general_dilated equations inside scan or while bodies of a jaxpr."""
    found = []
    for eqn in jaxpr.eqns:
        inner = []
        for value in eqn.params.values():
            for item in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(item, "jaxpr", item)
                if hasattr(sub, "eqns"):
                    inner.append(sub)
        for sub in inner:
            found += (
                _convs(sub) if eqn.primitive.name in ("scan", "while") else _convs_in_loops(sub)
            )
    return found


def _canonical(eqn):
    dn = eqn.params["dimension_numbers"]
    n = len(dn.lhs_spec) - 2
    return dn == dimension_numbers(n)


@pytest.mark.parametrize("loop, strides", [(True, 1), (False, 1), (True, 2)])
def test_scanned_gradient_holds_only_canonical_convolutions(rng, loop, strides):
    """Inside loop_body every convolution of the gradient is NHWC x HWIO -> NHWC; without
    it, lax's kernel gradient puts the batch in the feature position (the form XLA:CPU
    computes with its slow generic emitter inside a while loop)."""
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 4)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((2, 3, 3, 4, 4)), jnp.float32)

    def layer(h, kt):
        y = jax.nn.relu(ops.conv(h, kt, strides=strides, padding="SAME"))
        return jnp.pad(y, ((0, 0), (0, 6 - y.shape[1]), (0, 6 - y.shape[2]), (0, 0))), None

    def loss(x, k):
        return lax.scan(layer, x, k)[0].sum()

    def grad(x, k):
        with fast_paths.use_fast_paths(True):
            if loop:
                with fast_paths.loop_body():
                    return jax.grad(loss, (0, 1))(x, k)
            return jax.grad(loss, (0, 1))(x, k)

    convs = _convs(jax.make_jaxpr(grad)(x, k).jaxpr)
    assert len(convs) >= (3 if strides == 1 else 2)  # forward, kernel (and input) gradient
    canonical = [_canonical(e) for e in convs]
    assert all(canonical) if loop else not all(canonical)


def test_loop_body_marks_only_inside_the_block():
    assert not fast_paths.in_loop_body()
    with pytest.raises(RuntimeError), fast_paths.loop_body():
        assert fast_paths.in_loop_body()
        raise RuntimeError
    assert not fast_paths.in_loop_body()
    assert "loop_conv" in fast_paths.FAST_PATHS and "loop_conv" in fast_paths.CPU_DEFAULT
    assert ops.loop_body is fast_paths.loop_body


@pytest.mark.parametrize("depth", [20, 29])
def test_preact_resnet_scan_gradients_equal_unrolled(rng, depth):
    from cnn_jax.models.preact_resnet import PreActResNetCifar, stack_unrolled

    x = jnp.asarray(rng.standard_normal((4, 16, 16, 3)), jnp.float32)
    labels = jnp.arange(4) % 10
    unrolled = PreActResNetCifar(depth=depth, scan=False)
    scanned = PreActResNetCifar(depth=depth, scan=True)
    variables = unrolled.init(jax.random.key(0), x)
    stacked = stack_unrolled(variables, depth)

    def loss(model, v, p):
        logits, _ = model.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])[0]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    g_unrolled = jax.jit(jax.grad(lambda p: loss(unrolled, variables, p)))(variables["params"])
    grad_scanned = jax.grad(lambda p: loss(scanned, stacked, p))
    with fast_paths.use_fast_paths(True):  # the model marks its scanned stages itself
        convs = _convs_in_loops(jax.make_jaxpr(grad_scanned)(stacked["params"]).jaxpr)
        g_scanned = jax.jit(grad_scanned)(stacked["params"])
    assert convs and all(_canonical(e) for e in convs)
    g_restacked = stack_unrolled({"params": g_unrolled}, depth)["params"]
    flat_a = jax.tree_util.tree_leaves_with_path(g_scanned)
    flat_b = dict(jax.tree_util.tree_leaves_with_path(g_restacked))
    assert len(flat_a) == len(flat_b)
    for path, a in flat_a:
        b = flat_b[path]
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
