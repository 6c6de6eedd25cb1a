"""``Bridged``: any flax.linen module of cnn_jax as a ``flax.nnx`` module.

``Bridged`` is ``flax.nnx.bridge.ToNNX`` with what a cnn_jax module needs on top:

* **initialization** from a sample input (arrays or ``jax.ShapeDtypeStruct``) under
  ``jax.jit``, so no forward pass runs eagerly; or from an existing linen
  ``variables`` dict (pretrained weights, a checkpoint), with no sample at all;
* **the train flag**: cnn_jax modules take ``train`` (models, ``BatchNorm``); the
  wrapper passes ``train=not self.deterministic`` unless the call gives ``train=``,
  so NNX's ``model.train()`` / ``model.eval()`` switch batch statistics and dropout;
* **batch statistics**: the linen ``batch_stats`` collection becomes ``nnx.BatchStat``
  variables (every other collection the NNX type flax registers for it, ``params``
  -> ``nnx.Param``); a training-mode call writes the updated statistics back into
  those variables in place, so ``nnx.jit``/``nnx.grad`` carry them like any NNX state;
* **dropout keys** are drawn from the module's ``nnx.Rngs`` (every stream, ``default``
  serving as ``params``; linen's ``make_rng('dropout')`` falls back to ``params``);
* **the same variable tree as linen**: the NNX state paths are the linen paths, so
  ``linen_variables()`` / ``load_linen_variables()`` move weights either way.

Outputs are those of the linen module unchanged: a model returns
``(logits, features)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import meta, unfreeze
from flax.nnx import traversals
from flax.nnx.bridge import variables as bridge_variables

__all__ = ["Bridged", "bridge"]

Array = Any
RngsLike = nnx.Rngs | int | jax.Array


def _as_rngs(rngs: Any) -> nnx.Rngs:
    """An ``nnx.Rngs`` from an ``nnx.Rngs``, an int seed or a PRNG key."""
    if isinstance(rngs, nnx.Rngs):
        return rngs
    if isinstance(rngs, int | np.integer) and not isinstance(rngs, bool):
        return nnx.Rngs(int(rngs))
    if isinstance(rngs, jax.Array) and (
        jnp.issubdtype(rngs.dtype, jax.dtypes.prng_key)
        or (rngs.dtype == jnp.uint32 and rngs.shape == (2,))
    ):
        return nnx.Rngs(rngs)
    raise TypeError(f"`rngs` (={rngs!r}) must be an nnx.Rngs, an int seed or a jax PRNG key")


def _linen_rngs(rngs: Any) -> dict[str, jax.Array]:
    """Linen's ``rngs`` dict: one fresh key per ``nnx.Rngs`` stream (``default`` -> ``params``)."""
    if isinstance(rngs, Mapping):
        return dict(rngs)
    if isinstance(rngs, jax.Array):
        return {"params": rngs}
    keys = {name: stream() for name, stream in rngs.items()}
    if "params" not in keys and "default" in keys:
        keys["params"] = keys.pop("default")
    return keys


def _train_position(fn: Callable[..., Any]) -> int | None:
    """The index in ``args`` at which ``fn(module, *args)`` takes ``train``.

    ``-1`` if ``train`` is keyword-only, ``None`` if ``fn`` has no ``train``.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params]
    if "train" not in names:
        return None
    i = names.index("train")
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if all(p.kind in positional for p in params[: i + 1]):
        return i - 1
    return -1


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | jax.ShapeDtypeStruct)


def _init_variables(
    module: nn.Module, keys: dict[str, jax.Array], args: tuple, kwargs: dict
) -> dict[str, Any]:
    """``module.init(keys, *args, **kwargs)`` under ``jax.jit``.

    Array leaves of the sample are traced (``ShapeDtypeStruct`` leaves become zeros
    inside the computation); everything else is static. The forward pass does not feed
    the result, so the compiler drops it.
    """
    leaves, treedef = jax.tree.flatten((args, kwargs))
    traced = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]
    given = [leaves[i] for i in traced if not isinstance(leaves[i], jax.ShapeDtypeStruct)]

    def init(keys: dict[str, jax.Array], arrays: list[Array]) -> dict[str, Any]:
        filled = list(leaves)
        arrays = iter(arrays)
        for i in traced:
            leaf = leaves[i]
            if isinstance(leaf, jax.ShapeDtypeStruct):
                filled[i] = jnp.zeros(leaf.shape, leaf.dtype)
            else:
                filled[i] = next(arrays)
        a, k = jax.tree.unflatten(treedef, filled)
        return module.init(keys, *a, **k)

    return dict(jax.jit(init)(keys, given))


def _is_box(x: Any) -> bool:
    return isinstance(x, meta.AxisMetadata)


def _unbox(x: Any) -> Any:
    return x.unbox() if _is_box(x) else x


class Bridged(nnx.bridge.ToNNX):
    """A cnn_jax linen module (layer or model) as a ``flax.nnx`` module.

    Usually built with :func:`bridge` or one of the named constructors of
    ``cnn_jax.nnx`` (``cnn_jax.nnx.ResNet18(num_classes=10, rngs=nnx.Rngs(0))``).

    The linen variables are attributes of this module under their linen names
    (``model.conv1['kernel']`` is an ``nnx.Param``, ``model.bn1['mean']`` an
    ``nnx.BatchStat``), so ``nnx.state(model, nnx.Param)`` mirrors linen's
    ``variables['params']``.

    Attributes:
      deterministic: evaluation mode (running averages, no dropout) when ``True``;
        training mode when ``False`` (the default, as ``nnx.BatchNorm`` and
        ``nnx.Dropout``). Set by ``model.eval()`` / ``model.train()``; a call's
        ``train=`` argument overrides it. Ignored by modules without ``train``.
    """

    def __init__(
        self,
        module: nn.Module,
        *sample_args: Any,
        rngs: RngsLike,
        variables: Mapping[str, Any] | None = None,
        **sample_kwargs: Any,
    ):
        """Wraps ``module`` and creates its variables.

        Args:
          module: a ``flax.linen.Module`` instance (unbound), e.g.
            ``cnn_jax.models.ResNet18(num_classes=10)``.
          *sample_args: a sample input for ``module.init`` (arrays or
            ``jax.ShapeDtypeStruct``); not needed with ``variables``.
          rngs: ``nnx.Rngs`` (or an int seed, or a PRNG key) for initialization and
            later for dropout.
          variables: linen variables (``{'params': ..., 'batch_stats': ...}``) to use
            instead of initializing.
          **sample_kwargs: keyword arguments of the sample call (``train`` is not
            needed: linen modules initialize in evaluation mode).

        Raises:
          TypeError: if ``module`` is not a linen module or ``rngs`` is not usable.
          ValueError: without a sample nor ``variables``, with both, or if a top-level
            variable name clashes with an attribute of this class.
        """
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"`module` (={module!r}) must be a flax.linen.Module instance, got "
                f"{type(module).__name__}"
                + (" (a class: instantiate it first)" if isinstance(module, type) else "")
            )
        if module.scope is not None:
            raise ValueError(f"`module` (={type(module).__name__}) must be unbound")
        rngs = _as_rngs(rngs)
        super().__init__(module, rngs=rngs)
        self.deterministic = False
        if variables is None:
            if not sample_args and not sample_kwargs:
                raise ValueError(
                    "`sample_args` is empty: give a sample input, e.g. "
                    "jnp.zeros((1, 32, 32, 3)), or `variables`"
                )
            variables = _init_variables(
                module, _linen_rngs(self.to_nnx__rngs), sample_args, sample_kwargs
            )
        else:
            if sample_args or sample_kwargs:
                raise ValueError("give either a sample input or `variables`, not both")
            if not isinstance(variables, Mapping):
                raise TypeError(
                    f"`variables` must be a mapping of linen collections, got "
                    f"{type(variables).__name__}"
                )
            variables = jax.tree.map(jnp.asarray, unfreeze(variables))
        self.to_nnx__collections = tuple(sorted(variables))
        self.to_nnx__names = ()
        attrs = bridge_variables.linen_vars_to_nnx_attrs(variables)
        for name in attrs:
            if hasattr(type(self), name) or name in vars(self):
                raise ValueError(
                    f"`module` has a top-level variable or submodule named {name!r}, "
                    "which clashes with an attribute of Bridged; rename it"
                )
        for name, value in attrs.items():
            setattr(self, name, nnx.data(value))
        self.to_nnx__names = tuple(attrs)

    @property
    def linen_module(self) -> nn.Module:
        """The wrapped linen module."""
        return self.to_nnx__module

    def set_view(self, deterministic: bool | None = None) -> None:
        """Sets the mode for ``nnx.view`` (``deterministic=True``: evaluation)."""
        if deterministic is not None:
            self.deterministic = deterministic

    def linen_variables(self) -> dict[str, Any]:
        """The variables as linen's dict, ``{'params': ..., 'batch_stats': ...}``.

        ``self.linen_module.apply(self.linen_variables(), x)`` computes what
        ``self(x, train=False)`` does.
        """
        attrs = {name: vars(self)[name] for name in self.to_nnx__names}
        out = bridge_variables.nnx_attrs_to_linen_vars(attrs)
        return jax.tree.map(_unbox, out, is_leaf=_is_box)

    def load_linen_variables(self, variables: Mapping[str, Any]) -> None:
        """Sets every variable from a linen variables dict, in place.

        Args:
          variables: ``{'params': ..., 'batch_stats': ...}`` with exactly the paths
            and shapes of ``self.linen_variables()``.

        Raises:
          ValueError: if the paths or shapes differ.
        """
        mine = traversals.flatten_mapping(self.linen_variables())
        if not isinstance(variables, Mapping):
            raise TypeError(f"`variables` must be a mapping, got {type(variables).__name__}")
        theirs = traversals.flatten_mapping(
            jax.tree.map(_unbox, unfreeze(variables), is_leaf=_is_box)
        )
        if set(mine) != set(theirs):
            missing = sorted("/".join(map(str, p)) for p in set(mine) - set(theirs))
            extra = sorted("/".join(map(str, p)) for p in set(theirs) - set(mine))
            raise ValueError(f"`variables` paths differ: missing {missing}, unexpected {extra}")
        for path, value in theirs.items():
            if np.shape(value) != np.shape(mine[path]):
                raise ValueError(
                    f"`variables` {'/'.join(map(str, path))} has shape {np.shape(value)}, "
                    f"expected {np.shape(mine[path])}"
                )
        self._write(variables)

    def _write(self, updates: Mapping[str, Any]) -> None:
        """Writes linen collections into the matching NNX variables, in place.

        A variable the call created (a path not seen before) is added.
        """
        for col, tree in unfreeze(updates).items():
            for path, value in traversals.flatten_mapping(tree).items():
                value = jnp.asarray(_unbox(value))
                node: Any = vars(self)
                for key in path:
                    node = node.get(key) if isinstance(node, dict) else None
                if isinstance(node, nnx.Variable):
                    node.set_value(value)
                else:
                    self._add(bridge_variables.to_nnx_var(col, value), path)

    def _add(self, variable: nnx.Variable, path: tuple[str, ...]) -> None:
        """Adds ``variable`` at ``path`` (under the top-level attribute ``path[0]``)."""
        name = path[0]
        if name not in self.to_nnx__names and (hasattr(type(self), name) or name in vars(self)):
            raise ValueError(
                f"the call created a variable {'/'.join(path)!r} whose name clashes with "
                "an attribute of Bridged"
            )
        if len(path) == 1:
            setattr(self, name, nnx.data(variable))
        else:
            top = vars(self).get(name) if name in self.to_nnx__names else {}
            flat = traversals.flatten_mapping(top if isinstance(top, dict) else {})
            flat[path[1:]] = variable
            setattr(self, name, nnx.data(traversals.unflatten_mapping(flat)))
        if name not in self.to_nnx__names:
            self.to_nnx__names = (*self.to_nnx__names, name)

    def __call__(
        self,
        *args: Any,
        train: bool | None = None,
        rngs: nnx.Rngs | jax.Array | Mapping[str, jax.Array] | None = None,
        method: Callable[..., Any] | str | None = None,
        mutable: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Calls the linen module with this module's variables.

        Args:
          *args: the linen module's positional arguments (``x``).
          train: training mode for this call; ``None`` uses ``not self.deterministic``.
            Passed on as ``train=`` to modules that take it (``model(x, True)`` works
            too, as in linen).
          rngs: keys for this call instead of the module's ``nnx.Rngs`` (an
            ``nnx.Rngs``, a key, or linen's dict such as ``{'dropout': key}``).
          method: a method of the linen module to call instead of ``__call__``.
          mutable: linen's ``mutable``; default: in training mode every collection
            but ``params`` (``batch_stats``), otherwise none.
          **kwargs: the linen module's keyword arguments.

        Returns:
          What the linen module returns (a model: ``(logits, features)``).

        Raises:
          TypeError: if ``train`` is given to a module that does not take it.
        """
        target = type(self.to_nnx__module).__call__ if method is None else method
        if isinstance(target, str):
            target = getattr(type(self.to_nnx__module), target)
        position = _train_position(target)
        takes_train = position is not None
        if position is not None and 0 <= position < len(args):  # train given positionally
            if train is not None:
                raise TypeError(f"`train` given twice: as argument {position + 1} and by keyword")
            train, args = args[position], (*args[:position], *args[position + 1 :])
        if train is not None and not takes_train:
            raise TypeError(
                f"`train` (={train!r}) given, but {type(self.to_nnx__module).__name__} "
                "does not take `train`"
            )
        mode = (not self.deterministic) if train is None else bool(train)
        if takes_train:
            kwargs["train"] = mode
        if mutable is None:
            state_cols = [c for c in self.to_nnx__collections if c != "params"]
            mutable = state_cols if (mode and takes_train and state_cols) else False
        attrs = {name: vars(self)[name] for name in self.to_nnx__names}
        variables = bridge_variables.nnx_attrs_to_linen_vars(attrs)
        out = self.to_nnx__module.apply(
            variables,
            *args,
            rngs=_linen_rngs(self.to_nnx__rngs if rngs is None else rngs),
            method=method,
            mutable=mutable,
            **kwargs,
        )
        if mutable is not False:
            out, updates = out
            self._write(updates)
        return out


def bridge(
    module: nn.Module,
    *sample_args: Any,
    rngs: RngsLike,
    variables: Mapping[str, Any] | None = None,
    **sample_kwargs: Any,
) -> Bridged:
    """Any cnn_jax (or other) linen module as an initialized ``flax.nnx`` module.

    Example::

        model = bridge(cnn_jax.models.ResNet20(num_classes=10),
                       jnp.zeros((1, 32, 32, 3)), rngs=nnx.Rngs(0))
        logits, features = model(x)          # training mode (nnx default)
        model.eval(); logits, _ = model(x)   # running averages, no dropout

    Args:
      module: a ``flax.linen.Module`` instance.
      *sample_args: a sample input (arrays or ``jax.ShapeDtypeStruct``), batch first.
      rngs: ``nnx.Rngs``, an int seed or a PRNG key.
      variables: linen variables to load instead of initializing (then no sample).
      **sample_kwargs: keyword arguments of the sample call.

    Returns:
      The ``Bridged`` module.

    Raises:
      TypeError, ValueError: see ``Bridged``.
    """
    return Bridged(module, *sample_args, rngs=rngs, variables=variables, **sample_kwargs)
