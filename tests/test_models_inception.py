"""Inception v3 (torchvision's): sizes, auxiliary head, training, weights."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from cnn_jax import weights
from cnn_jax.models import inception
from tests import torch_oracle
from tests.model_helpers import (
    assert_logits_close,
    aux_step_shapes,
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

InceptionV3 = inception.InceptionV3

# Parameters with 1000 classes: torchvision's ``num_params`` (with the auxiliary head)
# and the sum of the parameters of the model it builds (without).
PARAMS = {
    "inception_v3": (InceptionV3, 27_161_264),
    "inception_v3_noaux": (functools.partial(InceptionV3, aux_logits=False), 23_834_568),
}


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    make, expected = PARAMS[name]
    assert count(template(make(), 299)["params"]) == expected


def test_counts_do_not_depend_on_input_size():
    # The auxiliary head is initialized whatever the input size.
    assert count(template(InceptionV3(), 75)["params"]) == 27_161_264


def test_inception_v3_shapes_and_aux_logits_only_in_training():
    stages = {
        "Conv2d_1a_3x3": (2, 149, 149, 32),
        "Conv2d_2a_3x3": (2, 147, 147, 32),
        "Conv2d_2b_3x3": (2, 147, 147, 64),
        "Conv2d_3b_1x1": (2, 73, 73, 80),
        "Conv2d_4a_3x3": (2, 71, 71, 192),
        "Mixed_5b": (2, 35, 35, 256),
        "Mixed_5c": (2, 35, 35, 288),
        "Mixed_5d": (2, 35, 35, 288),
        "Mixed_6a": (2, 17, 17, 768),
        "Mixed_6b": (2, 17, 17, 768),
        "Mixed_6c": (2, 17, 17, 768),
        "Mixed_6d": (2, 17, 17, 768),
        "Mixed_6e": (2, 17, 17, 768),
        "Mixed_7a": (2, 8, 8, 1280),
        "Mixed_7b": (2, 8, 8, 2048),
        "Mixed_7c": (2, 8, 8, 2048),
        "pre_logits": (2, 2048),
    }
    assert outputs(InceptionV3(), 299, train=False) == ((2, 1000), stages)
    aux = {"aux_logits": (2, 1000)}
    assert outputs(InceptionV3(), 299, train=True) == ((2, 1000), {**stages, **aux})
    assert outputs(InceptionV3(aux_logits=False), 299, train=True) == ((2, 1000), stages)
    logits, feats = outputs(InceptionV3(aux_logits=False), 75, train=True)
    assert logits == (2, 1000) and feats["Mixed_7c"] == (2, 1, 1, 2048)


def test_inception_v3_aux_head_needs_299_in_training():
    with pytest.raises(ValueError, match=r"aux_logits=False.*|.*299x299"):
        outputs(InceptionV3(), 298, train=True)
    outputs(InceptionV3(), 298, train=False)  # evaluation does not run the head


@pytest.mark.parametrize(
    "make, x, match",
    [
        (InceptionV3, np.zeros((1, 75, 75), np.float32), "shape"),
        (lambda: InceptionV3(dropout=1.0), np.zeros((1, 75, 75, 3), np.float32), "dropout"),
    ],
)
def test_bad_input_and_attributes(make, x, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(lambda: make().init(jax.random.key(0), x))


# --- training -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, make, size, aux_keys", [("inception_v3", InceptionV3, 299, ("aux_logits",))]
)
def test_train_step_traces(name, make, size, aux_keys):
    """The whole training step (dropout, auxiliary loss, gradients) by abstract
    evaluation (compiled in the slow ``test_train_step_small_input``)."""
    tmpl, (new, loss, grads, logits, aux) = aux_step_shapes(make(num_classes=5), size)
    assert jax.tree.structure(new) == jax.tree.structure(tmpl)
    assert jax.tree.map(lambda g: g.shape, grads) == jax.tree.map(lambda p: p.shape, tmpl["params"])
    assert loss.shape == () and logits.shape == (2, 5)
    assert {k: v.shape for k, v in aux.items()} == {k: (2, 5) for k in aux_keys}


@pytest.mark.slow  # 1-4 min on 2 CPU cores (compilation)
@pytest.mark.parametrize("name", ["inception_v3_noaux"])
def test_train_step_small_input(name):
    model = InceptionV3(aux_logits=False, num_classes=5)
    size = 75
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, size, size, 3)), jnp.float32)
    variables = random_like(template(model, size))
    new, loss, grads, logits, aux = jit_fast(aux_train_step(model))(
        variables, x, np.array([1, 3]), jax.random.key(2)
    )
    assert logits.shape == (2, 5) and np.isfinite(np.asarray(logits)).all()
    check_aux_step(variables, new, loss, grads, aux, (), ())


@pytest.mark.slow  # ~ 1 min on 2 CPU cores (compiling the initializers)
def test_initialization():
    """torchvision's init (truncated normal, std 0.1; 0.001 for ``AuxLogits.fc``),
    PyTorch's Linear biases, batch norms 1 / 0, running statistics 0 / 1."""
    x = jnp.zeros((1, 75, 75, 3))
    flat = traverse_util.flatten_dict(jit_fast(InceptionV3().init)(jax.random.key(0), x))
    for (collection, *path, leaf), v in flat.items():
        v, where = np.asarray(v), "/".join(path)
        if leaf == "kernel":
            std = 0.001 if where == "AuxLogits/fc" else 0.1
            assert abs(v.std() - std) < (0.05 if v.size > 5000 else 0.15) * std, where
        elif (collection, *path, "kernel") in flat:
            assert 0 < np.abs(v).max() <= 1 / np.sqrt(flat[(collection, *path, "kernel")].shape[0])
        else:
            assert np.all(v == (1.0 if leaf in ("scale", "var") else 0.0)), where


# --- torchvision ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec_name, build",
    [("inception_v3", lambda tv: tv.models.inception_v3(init_weights=False))],
)
def test_names_and_shapes_match_torchvision(spec_name, build):
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    with torch.device("meta"):  # no memory, no initialization
        net = build(tv)
    spec = inception.TORCHVISION_SPECS[spec_name]
    assert spec.export
    model = spec.model(**spec.model_kwargs)
    assert model.transform_input  # as torchvision with its ImageNet weights
    tmpl = template(model, spec.input_size)
    assert torch_layout(tmpl, spec.key_fn) == torch_state_shapes(net)
    assert count(tmpl["params"]) == sum(p.numel() for p in net.parameters())


def randomize_batch_norms_no_aux(torch, net, x):
    """As ``randomize_torch_batch_norms`` for a net whose auxiliary head cannot run on
    ``x``."""
    aux, net.aux_logits, net.AuxLogits = net.AuxLogits, False, None
    randomize_torch_batch_norms(torch, net, x)
    net.AuxLogits, net.aux_logits = aux, True


def test_inception_v3_logits_equal_torchvision():
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(2, 75, 75, 3)).astype(np.float32)
    net = tv.models.inception_v3(init_weights=True, aux_logits=True, num_classes=10)
    randomize_batch_norms_no_aux(torch, net, nchw(torch, x))
    spec = inception.TORCHVISION_SPECS["inception_v3"]
    model, variables = from_torch_net(spec, net, x)
    with torch.no_grad():
        theirs = net(nchw(torch, x)).numpy()
    ours, _ = jit_fast(model.apply)(variables, x)
    # Random batch-norm statistics blow the logits up to ~1e6; float32 sums in another
    # order (XLA's kernels against oneDNN's, both CPU-dependent) differed by 1.3e-4 of
    # that scale on an Intel Xeon, under 1e-4 on an AMD EPYC.
    assert_logits_close(ours, theirs, tol=3e-4)
    state = weights.to_torch(variables, key_fn=spec.key_fn)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
