"""torchvision comparisons the model tests share (``tests/test_models_*.py``).

Layouts (our variables as torchvision's state-dict keys and shapes), torchvision models
with random non-trivial statistics, and round trips through ``cnn_jax.weights``. Torch
and torchvision come through ``tests.torch_oracle``, which skips a test without them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnn_jax import weights
from tests import torch_oracle
from tests.model_helpers import close, jit_o0, normal, template


def torch_layout(variables, key_fn=None):
    """Our variables as torchvision's ``{key: shape}``, by ``key_fn`` (default
    ``weights.default_torch_key``)."""
    key_fn = key_fn or weights.default_torch_key
    leaf = {"kernel": "weight", "bias": "bias", "scale": "weight"}
    leaf |= {"mean": "running_mean", "var": "running_var"}
    out = {}
    for (_, *path, name), v in traverse_util.flatten_dict(variables).items():
        shape = tuple(v.shape)
        if name == "kernel":  # (H, W, I, O) -> (O, I, H, W); (I, O) -> (O, I)
            shape = shape[::-1] if len(shape) == 2 else (shape[3], shape[2], *shape[:2])
        out[f"{key_fn(tuple(path))}.{leaf[name]}"] = shape
    return out


def torch_state_shapes(net):
    """``{key: shape}`` of a torch module's state dict, without ``num_batches_tracked``."""
    return {
        k: tuple(v.shape) for k, v in net.state_dict().items() if "num_batches_tracked" not in k
    }


def torch_net(name, seed=0):
    """A torchvision model with random non-trivial batch-norm parameters and statistics
    and random biases (where it has them)."""
    torch = torch_oracle.torch()
    tv = torch_oracle.torchvision()
    torch.manual_seed(seed)
    net = getattr(tv.models, name)()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and m.bias is not None:
                m.bias.uniform_(-0.05, 0.05)
    return net.eval()


def nchw(torch, x):
    """``(N, H, W, C)`` numpy -> ``(N, C, H, W)`` torch tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(np.array(x), (0, 3, 1, 2))))


def torch_logits(net, x):
    torch = torch_oracle.torch()
    with torch.no_grad():
        return net(nchw(torch, x)).numpy()


def check_torchvision_roundtrip(spec, name, size):
    """torchvision -> ours gives its logits and round-trips; weights changed on our side
    (shifted along the first axis, so a wrong layout shows) load into torchvision
    strictly and give our logits."""
    torch = torch_oracle.torch()
    model = spec.model()
    apply = jax.jit(model.apply)
    x = jax.random.normal(jax.random.key(3), (2, size, size, 3))
    net = torch_net(name)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    kw = dict(key_fn=spec.key_fn, transforms=spec.transforms)
    variables = weights.from_torch(sd, template(model, size), **kw)
    before = torch_logits(net, x)
    close(apply(variables, x)[0], before)

    back = weights.to_torch(variables, **kw)
    assert back.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)

    ours = jax.tree.map(lambda v: np.roll(v, 1, axis=0), variables)
    net.load_state_dict(
        {k: torch.from_numpy(v) for k, v in weights.to_torch(ours, **kw).items()}, strict=True
    )
    theirs = torch_logits(net, x)
    close(apply(ours, x)[0], theirs)
    assert not np.allclose(theirs, before, rtol=1e-2)


def check_torchvision_fresh(spec, name, size):
    """torchvision -> ours gives its logits and round-trips; other weights (scaled by 0.9)
    exported into a fresh torchvision model (strictly) give its logits."""
    torch = torch_oracle.torch()
    model = spec.model()
    x = normal((2, size, size, 3), 3)
    net = torch_net(name)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    kw = dict(key_fn=spec.key_fn, transforms=spec.transforms)
    variables = weights.from_torch(sd, template(model, size), **kw)
    forward = jit_o0(lambda v: model.apply(v, x)[0])
    close(forward(variables), torch_logits(net, x))

    back = weights.to_torch(variables, **kw)
    assert back.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)

    other = jax.tree.map(lambda v: np.asarray(v) * np.float32(0.9), variables)
    fresh = torch_net(name, seed=1)
    exported = weights.to_torch(other, **kw)
    fresh.load_state_dict({k: torch.tensor(np.array(v)) for k, v in exported.items()}, strict=True)
    close(forward(other), torch_logits(fresh, x))


def randomize_torch_batch_norms(torch, net, x):
    """Running statistics of a forward pass (momentum 1) and random affine parameters."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
    net.train()
    with torch.no_grad():
        net(x)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    net.eval()


def from_torch_net(spec, net, x):
    """``net``'s state dict through ``from_torch`` into our model (``transform_input``
    off); returns ``(model, variables)``."""
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    model = spec.model(num_classes=net.fc.out_features)
    tmpl = template(model, x.shape[1])
    variables = weights.from_torch(state, tmpl, key_fn=spec.key_fn, transforms=spec.transforms)
    return model, jax.tree.map(jnp.asarray, variables)
