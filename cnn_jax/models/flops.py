"""Multiply-adds and FLOPs per image of a model's forward pass, by exact arithmetic.

Definitions (those of the papers the models come from):

* **MACs** (multiply-accumulates): the products of the convolutions and the dense
  (matrix) layers of one forward pass in evaluation mode, for one image. A
  convolution producing an output of ``H' x W' x C_out`` with a ``k_h x k_w`` kernel
  over ``C_in / groups`` input channels costs ``H' W' C_out k_h k_w C_in / groups``; a
  dense layer ``d_in -> d_out`` costs ``d_in d_out``. Normalizations, activations,
  pooling, additions, concatenations and biases are not counted. He et al. (2015)
  call these "FLOPs" (ResNet-152: 11.3 billion); ResNet-20 on CIFAR-10 has
  40,551,040 (the often quoted 41M).
* **FLOPs**: ``2 x MACs``, one multiplication and one addition per product.

The count is read off the program JAX traces for the model (``jax.make_jaxpr`` of
``model.apply`` on one abstract image, with variables from ``jax.eval_shape``: nothing
is computed or allocated), summing over its ``conv_general_dilated`` and
``dot_general`` operations, multiplied by the length of the ``scan`` that holds them
(``nn.scan`` stages) and the largest branch of a ``cond``. cnn_jax's fast paths are
off while tracing, so that every convolution appears as one convolution (the fast
paths compute the same products in other forms). A kernel that is masked or
scattered (LeNet-5's C3 table) counts as the dense convolution that is executed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from cnn_jax.models._common import check_positive_ints
from cnn_jax.ops.fast_paths import use_fast_paths

__all__ = ["count_macs", "jaxpr_macs", "model_flops", "model_macs"]


def _eqn_macs(eqn: Any) -> int:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        out = eqn.outvars[0].aval.shape
        rhs = eqn.invars[1].aval.shape
        out_channels = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
        return math.prod(out) * (math.prod(rhs) // out_channels)
    if name == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
    return 0


def _sub_jaxprs(value: Any) -> list[Any]:
    if isinstance(value, jex_core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jex_core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in _sub_jaxprs(v)]
    return []


def jaxpr_macs(jaxpr: Any) -> int:
    """Multiply-accumulates of the convolutions and dot products of a jaxpr.

    Args:
      jaxpr: a ``Jaxpr`` or ``ClosedJaxpr``.

    Returns:
      The MACs, with ``scan`` bodies counted ``length`` times and the largest branch
      of each ``cond``.

    Raises:
      ValueError: for a ``while`` loop (unknown trip count) whose body has products.
    """
    if isinstance(jaxpr, jex_core.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    total = 0
    for eqn in jaxpr.eqns:
        total += _eqn_macs(eqn)
        name = eqn.primitive.name
        if name == "cond":
            total += max(jaxpr_macs(b) for b in eqn.params["branches"])
            continue
        inner = sum(jaxpr_macs(j) for v in eqn.params.values() for j in _sub_jaxprs(v))
        if name == "scan":
            inner *= eqn.params["length"]
        elif name == "while" and inner:
            raise ValueError("cannot count the products of a `while` loop of unknown length")
        total += inner
    return total


def count_macs(model: Any, input_shape: Sequence[int], input_dtype: Any = jnp.float32) -> int:
    """MACs of ``model.apply`` (evaluation mode) on one image (module docstring).

    Args:
      model: a flax module ``__call__(x, train) -> (logits, features)``.
      input_shape: one example's shape (``(H, W, C)`` for images).
      input_dtype: the input's dtype.

    Returns:
      Multiply-accumulates per image.

    Raises:
      ValueError: for a bad ``input_shape``.
    """
    shape = (1, *check_positive_ints(input_shape, "input_shape"))
    x = jax.ShapeDtypeStruct(shape, jnp.dtype(input_dtype))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    with use_fast_paths(False):
        jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return jaxpr_macs(jaxpr)


def _resolve(name: str, input_shape: Sequence[int] | None, kwargs: dict[str, Any]):
    from cnn_jax import models
    from cnn_jax.models.input_shapes import default_input

    model = models.get_model(name, **kwargs)
    shape, dtype = default_input(models.model_class(name).__name__)
    return model, shape if input_shape is None else input_shape, dtype


def model_macs(name: str, input_shape: Sequence[int] | None = None, **kwargs: Any) -> int:
    """MACs per image of a registered model (``cnn_jax.models.get_model(name, **kwargs)``).

    Args:
      name: a key of ``cnn_jax.models.MODELS``.
      input_shape: one example's shape; default the size the model was published for
        (``cnn_jax.models.input_shapes``: 32x32 for the CIFAR models, 28x28 or 32x32
        grey for the MNIST ones, 299x299 for Inception v3 and Xception, audio and token
        lengths for the sequence models, else 224x224), in its dtype (token ids: int32).
      **kwargs: the model's attributes.

    Returns:
      Multiply-accumulates per image.
    """
    model, shape, dtype = _resolve(name, input_shape, kwargs)
    return count_macs(model, shape, dtype)


def model_flops(name: str, input_shape: Sequence[int] | None = None, **kwargs: Any) -> int:
    """FLOPs per image, ``2 * model_macs(name, input_shape, **kwargs)``."""
    return 2 * model_macs(name, input_shape, **kwargs)
