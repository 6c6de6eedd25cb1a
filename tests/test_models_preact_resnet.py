"""Pre-activation bottleneck ResNets for CIFAR (He et al. 2016): sizes, scan, remat."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnn_jax.models import preact_resnet
from tests.model_helpers import count, jit_o0, normal, output_shapes, random_like, template


def _weights(tree):
    flat = traverse_util.flatten_dict(tree["params"], sep="/")
    return sum(int(np.prod(v.shape)) for k, v in flat.items() if k.endswith("kernel"))


@pytest.mark.parametrize(
    "make, params, weights",
    [
        (preact_resnet.PreActResNet164, 1_703_258, 1_679_024),
        (preact_resnet.PreActResNet1001, 10_327_706, 10_178_480),
    ],
)
def test_parameter_counts(make, params, weights):
    """The paper's 1.7M / 10.2M: the 10.2M counts the weights, without batch norm."""
    tree = template(make(), 32)
    assert count(tree["params"]) == params
    assert _weights(tree) == weights  # convolution and classifier kernels


def test_unrolled_has_the_same_count():
    scanned = template(preact_resnet.PreActResNet164(), 32)
    unrolled = template(preact_resnet.PreActResNet164(scan=False), 32)
    assert count(scanned) == count(unrolled)
    assert scanned["params"]["layer1_rest"]["unit"]["conv2"]["kernel"].shape == (17, 3, 3, 16, 16)


def test_shapes():
    logits, f = output_shapes(preact_resnet.PreActResNetCifar(depth=20, num_classes=7), 32)
    assert logits == (2, 7)
    assert f == {
        "stem": (2, 32, 32, 16),
        "layer1": (2, 32, 32, 64),
        "layer2": (2, 16, 16, 128),
        "layer3": (2, 8, 8, 256),
        "post": (2, 8, 8, 256),
        "pre_logits": (2, 256),
    }


DEPTH = 29  # n = 3: two identical units per stage


def _pair(remat=False):
    unrolled = preact_resnet.PreActResNetCifar(depth=DEPTH, scan=False)
    scanned = preact_resnet.PreActResNetCifar(depth=DEPTH, scan=True, remat=remat)
    variables = random_like(template(unrolled, 8, batch=2))
    stacked = preact_resnet.stack_unrolled(variables, DEPTH)
    assert jax.tree.map(np.shape, stacked) == jax.tree.map(np.shape, template(scanned, 8, batch=2))
    return unrolled, scanned, variables, stacked, jnp.asarray(normal((2, 8, 8, 3), 1))


def _close(a, b):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, float(np.abs(b).max())))


def _forward(model, v, x):
    (logits, _), upd = model.apply(v, x, train=True, mutable=["batch_stats"])
    return logits, upd["batch_stats"], model.apply(v, x)[0]


def test_scan_and_unrolled_give_the_same_outputs():
    """Same weights (stacked for the scan): the same logits and new batch statistics in
    training mode and the same logits in evaluation mode."""
    unrolled, scanned, variables, stacked, x = _pair()
    a = jit_o0(lambda v: _forward(unrolled, v, x))(variables)
    b = jit_o0(lambda v: _forward(scanned, v, x))(stacked)
    _close(a[0], b[0])
    _close(a[2], b[2])
    stats = preact_resnet.stack_unrolled({"batch_stats": a[1]}, DEPTH)["batch_stats"]
    jax.tree.map(_close, stats, b[1])


@pytest.mark.slow
@pytest.mark.parametrize("remat", [False, True])
def test_scan_and_unrolled_give_the_same_gradients(remat):
    unrolled, scanned, variables, stacked, x = _pair(remat)

    def grads(model, v):
        def loss(params):
            (logits, _), _ = model.apply(
                {**v, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            return jnp.mean(jax.nn.log_softmax(logits)[:, 0])

        return jax.grad(loss)(v["params"])

    a = jit_o0(lambda v: grads(unrolled, v))(variables)
    b = jit_o0(lambda v: grads(scanned, v))(stacked)
    jax.tree.map(_close, preact_resnet.stack_unrolled({"params": a}, DEPTH)["params"], b)


def test_remat_traces_a_training_step():
    """``remat=True`` changes how the gradient is computed, not its shapes."""
    model = preact_resnet.PreActResNetCifar(depth=DEPTH, remat=True)
    tree = template(model, 8, batch=2)
    x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)

    def step(v, x):
        def loss(params):
            (logits, _), _ = model.apply(
                {**v, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            return jnp.mean(logits)

        return jax.grad(loss)(v["params"])

    grads = jax.eval_shape(step, tree, x)
    assert jax.tree.map(np.shape, grads) == jax.tree.map(np.shape, tree["params"])


@pytest.mark.parametrize("depth", [0, 11.0, 20.5, 21, 164 + 1, 1000, True])
def test_bad_depth_names_the_value(depth):
    with pytest.raises(ValueError, match=rf"`depth` \(={depth!r}\)"):
        preact_resnet.PreActResNetCifar(depth=depth)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`num_classes` \(=0\)"):
        preact_resnet.PreActResNet1001(num_classes=0)
    with pytest.raises(ValueError, match=r"`widths` \(=\(\)\)"):
        preact_resnet.PreActResNetCifar(widths=())


def test_deep_compile_benchmark_command_line(capsys):
    """``benchmarks.deep_compile_cpu``: ``--help``, and a bad depth named (checked
    before the process is set up)."""
    from benchmarks import deep_compile_cpu

    for argv, code in ((["--help"], 0), (["--depth", "12"], 2)):
        with pytest.raises(SystemExit) as stop:
            deep_compile_cpu.main(argv)
        assert stop.value.code == code
    out, err = capsys.readouterr()
    assert "--xla-defaults" in out and "--depth (=12)" in err


@pytest.mark.slow
def test_deep_compile_benchmark_compiles():
    from benchmarks import deep_compile_cpu

    r = deep_compile_cpu.compile_form(11, 2, "scan+remat")
    assert r["total"] >= r["compile"] > 0
    assert r["peak"] is None or r["peak"] >= r["temp"] > 0


def test_deep_compile_benchmark_runs_each_form(capsys):
    """``--run`` times every compiled form from the same weights on one batch: after two
    steps (the second from weights the first's gradients moved) the scanned step with
    the 'loop_conv' fast path, the unrolled one and the scanned one with lax's
    derivatives reach the same loss."""
    from benchmarks import deep_compile_cpu

    argv = ["--depth", "20", "--batch", "4", "--no-remat", "--unrolled", "--lax-derivatives"]
    deep_compile_cpu.main([*argv, "--run", "--steps", "1"])
    out = capsys.readouterr().out
    table = out.split("Training steps after one warm-up")[1]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| ")][1:]
    assert [r[1].strip() for r in rows] == ["scan", "unrolled", "scan, lax derivatives"]
    losses = [float(r[5]) for r in rows]
    assert losses[0] == pytest.approx(losses[1], abs=2e-4)
    assert losses[0] == pytest.approx(losses[2], abs=2e-4)
