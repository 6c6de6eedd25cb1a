"""GoogLeNet (torchvision's): sizes, auxiliary heads, training, weights."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnn_jax import weights
from cnn_jax.models import googlenet
from tests import torch_oracle
from tests.model_helpers import (
    assert_logits_close,
    aux_train_step,
    check_aux_step,
    count,
    jit_fast,
    outputs,
    random_like,
    template,
)
from tests.model_torch import (
    from_torch_net,
    nchw,
    randomize_torch_batch_norms,
    torch_layout,
    torch_state_shapes,
)

GoogLeNet = googlenet.GoogLeNet

# Parameters with 1000 classes: torchvision's ``num_params`` (without the auxiliary
# heads) and the sum of the parameters of the model it builds (with them).
PARAMS = {
    "googlenet": (GoogLeNet, 13_004_888),
    "googlenet_noaux": (functools.partial(GoogLeNet, aux_logits=False), 6_624_904),
}


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make(), 224)["params"]) == expected


def test_counts_do_not_depend_on_input_size():
    # The auxiliary heads are initialized whatever the input size.
    assert count(template(GoogLeNet(), 64)["params"]) == 13_004_888


def test_googlenet_shapes_and_aux_logits_only_in_training():
    stages = {
        "conv1": (2, 112, 112, 64),
        "conv3": (2, 56, 56, 192),
        "inception3a": (2, 28, 28, 256),
        "inception3b": (2, 28, 28, 480),
        "inception4a": (2, 14, 14, 512),
        "inception4b": (2, 14, 14, 512),
        "inception4c": (2, 14, 14, 512),
        "inception4d": (2, 14, 14, 528),
        "inception4e": (2, 14, 14, 832),
        "inception5a": (2, 7, 7, 832),
        "inception5b": (2, 7, 7, 1024),
        "pre_logits": (2, 1024),
    }
    assert outputs(GoogLeNet(), 224, train=False) == ((2, 1000), stages)
    aux = {"aux_logits1": (2, 1000), "aux_logits2": (2, 1000)}
    assert outputs(GoogLeNet(), 224, train=True) == ((2, 1000), {**stages, **aux})
    assert outputs(GoogLeNet(aux_logits=False), 224, train=True) == ((2, 1000), stages)


@pytest.mark.parametrize(
    "make, x, match",
    [
        (GoogLeNet, np.zeros((64, 64, 3), np.float32), "shape"),
        (lambda: GoogLeNet(num_classes=0), np.zeros((1, 64, 64, 3), np.float32), "num_classes"),
        (
            lambda: GoogLeNet(transform_input=True),
            np.zeros((1, 64, 64, 1), np.float32),
            "channels",
        ),
    ],
)
def test_bad_input_and_attributes(make, x, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda: make().init(jax.random.key(0), x))


# --- training -------------------------------------------------------------------------


def check_googlenet_init(variables):
    """torchvision's init: truncated normal (std 0.01) weights, PyTorch's Linear biases,
    batch norm 1 / 0, running statistics 0 / 1."""
    flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, variables))
    for (collection, *path, leaf), v in flat.items():
        where = "/".join(path)
        if leaf == "kernel":
            assert abs(v.std() - 0.01) < (0.002 if v.size > 1000 else 0.01), where
            assert np.abs(v).max() <= 2.0
        elif (collection, *path, "kernel") in flat:  # a Linear's bias
            fan_in = flat[(collection, *path, "kernel")].shape[0]
            assert 0 < np.abs(v).max() <= 1 / np.sqrt(fan_in), where
        else:
            assert np.all(v == (1.0 if leaf in ("scale", "var") else 0.0)), where


@pytest.mark.slow  # ~ 1 min on 2 CPU cores (compiling the initializers)
def test_initialization():
    """torchvision's init (truncated normal, std 0.01). Batch norms 1 / 0, running
    statistics 0 / 1."""
    x = jnp.zeros((1, 64, 64, 3))
    check_googlenet_init(jit_fast(GoogLeNet(num_classes=10).init)(jax.random.key(0), x))


@pytest.mark.slow  # 45-57 s on 2 cores
def test_googlenet_train_step_equals_torchvision():
    """One compiled training step with both auxiliary heads; torchvision, given our
    variables through ``to_torch``, agrees on the loss, the logits, the auxiliary logits,
    every gradient and the new running statistics.

    In float64 on both sides, where the two must agree to rounding (1e-8); float32
    rounding moves each framework's gradients by up to ~1e-3 of their scale, so float32
    is checked separately, against our float64 gradients.
    """
    with jax.enable_x64(True):
        model = GoogLeNet(num_classes=10, dropout=0.0, dropout_aux=0.0)
        x = np.random.default_rng(0).normal(size=(2, 64, 64, 3))
        y = np.array([1, 3])
        variables = random_like(template(model, 64), dtype=np.float64)
        new, loss, grads, logits, aux = jit_fast(aux_train_step(model))(
            variables, x, y, jax.random.key(2)
        )
        check_aux_step(
            variables, new, loss, grads, aux, ("aux_logits1", "aux_logits2"), ("aux1", "aux2")
        )
    assert logits.dtype == jnp.float64 and grads["fc"]["kernel"].dtype == jnp.float64

    # float32 against those exact derivatives: every gradient within 5e-3 of its tensor's
    # largest entry (measured: at most 1.4e-3, median 5e-4; torchvision's float32 on the
    # same step: 1.1e-3 / 3e-4). With jaxlib 0.10's YNNPACK convolutions (XLA_FLAGS
    # without the suite's XLA:CPU defaults) this was 0.2 / 0.02: the defaults keep it out.
    v32 = jax.tree.map(lambda a: np.asarray(a, np.float32), variables)
    _, _, g32, _, _ = jit_fast(aux_train_step(model))(
        v32, x.astype(np.float32), y, jax.random.key(2)
    )
    flat64 = traverse_util.flatten_dict(jax.tree.map(np.asarray, grads))
    for k, g in traverse_util.flatten_dict(jax.tree.map(np.asarray, g32)).items():
        assert g.dtype == np.float32
        exact = flat64[k]
        err = np.abs(g - exact).max() / max(np.abs(exact).max(), 1e-30)
        assert err < 5e-3, f"float32 gradient {'/'.join(k)}: relative error {err:.1e}"

    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    spec = googlenet.TORCHVISION_SPECS["googlenet"]
    state = weights.to_torch(variables, key_fn=spec.key_fn, transforms=spec.transforms)
    net = tv.models.googlenet(init_weights=False, num_classes=10, dropout=0.0, dropout_aux=0.0)
    net = net.double()
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    net.train()
    out = net(nchw(torch, x))
    ce = torch.nn.functional.cross_entropy
    target = torch.from_numpy(y)
    torch_loss = ce(out.logits, target) + 0.3 * (
        ce(out.aux_logits1, target) + ce(out.aux_logits2, target)
    )
    torch_loss.backward()
    np.testing.assert_allclose(float(loss), torch_loss.detach().item(), rtol=1e-10)
    assert_logits_close(logits, out.logits.detach().numpy(), tol=1e-9)
    for k in ("aux_logits1", "aux_logits2"):
        assert_logits_close(aux[k], getattr(out, k).detach().numpy(), tol=1e-9)
    ours = weights.to_torch({"params": grads}, key_fn=spec.key_fn, transforms=spec.transforms)
    theirs = {k: p.grad.numpy() for k, p in net.named_parameters()}
    assert sorted(ours) == sorted(theirs)
    for k, g in theirs.items():
        np.testing.assert_allclose(ours[k], g, rtol=0, atol=1e-8 * np.abs(g).max(), err_msg=k)
    stats = weights.to_torch({"batch_stats": new["batch_stats"]}, key_fn=spec.key_fn)
    after = net.state_dict()
    for k, v in stats.items():
        if "running" in k:  # stored in float32
            np.testing.assert_allclose(v, after[k].numpy(), rtol=1e-5, atol=1e-7, err_msg=k)


# --- torchvision ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec_name, build",
    [
        ("googlenet", lambda tv: tv.models.googlenet(init_weights=False)),
        ("googlenet_noaux", lambda tv: tv.models.googlenet(aux_logits=False, init_weights=False)),
    ],
)
def test_names_and_shapes_match_torchvision(spec_name, build):
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):  # no memory, no initialization
        net = build(tv)
    spec = googlenet.TORCHVISION_SPECS[spec_name]
    assert spec.export
    model = spec.model(**spec.model_kwargs)
    assert model.transform_input  # as torchvision with its ImageNet weights
    tmpl = template(model, spec.input_size)
    assert torch_layout(tmpl, spec.key_fn) == torch_state_shapes(net)
    assert count(tmpl["params"]) == sum(p.numel() for p in net.parameters())


def test_googlenet_logits_equal_torchvision():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    net = tv.models.googlenet(init_weights=True, dropout=0.0, dropout_aux=0.0, num_classes=10)
    randomize_torch_batch_norms(torch, net, nchw(torch, x))
    spec = googlenet.TORCHVISION_SPECS["googlenet"]
    model, variables = from_torch_net(spec, net, x)
    with torch.no_grad():
        theirs = net(nchw(torch, x)).numpy()
    ours, _ = jit_fast(model.apply)(variables, x)
    assert_logits_close(ours, theirs)


def test_transform_input_equals_torchvision():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    with torch.device("meta"):
        net = tv.models.googlenet(transform_input=True, init_weights=False)
    theirs = net._transform_input(nchw(torch, x)).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(googlenet.transform_input(x)), theirs, atol=1e-6)
