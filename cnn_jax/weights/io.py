"""Reading and writing weight files without executing any code from them.

* PyTorch ``.pth``/``.pt``/``.bin``: ``torch.load(..., weights_only=True)``, whose
  restricted unpickler builds tensors and containers only (``torch`` is an optional
  dependency: ``pip install cnn_jax[torch]``).
* ``.safetensors``: a JSON header and raw buffers, read with ``safetensors.numpy``.
* Keras ``.h5`` (the legacy format of ``keras.applications`` files and of
  ``model.save_weights('x.h5')``/``model.save('x.h5')``) and Keras 3 ``.weights.h5``:
  plain HDF5 datasets read with ``h5py``.

Only the named file is read: HDF5 links, external storage and virtual datasets are
refused, and declared sizes are checked before anything is decompressed.

A file's contents are checked against what its name claims (the zip or pickle
signature of a PyTorch file, the header of a safetensors file, the HDF5 signature), so
a renamed or corrupted file is an error rather than garbage weights.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_KERAS_BYTES", "load_keras_weights", "load_state_dict", "save_state_dict"]

PathLike = str | os.PathLike

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def _head(path: Path, n: int) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"weight file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        return f.read(n)


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _to_numpy(name: str, value: Any) -> np.ndarray:
    import torch

    if not isinstance(value, torch.Tensor):
        raise ValueError(
            f"entry {name!r} of the state dict is a {type(value).__name__}, not a tensor"
        )
    value = value.detach().cpu()
    if value.dtype == torch.bfloat16:
        value = value.float()
    return value.numpy().copy()


def _unwrap(obj: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{str(path)!r} holds a {type(obj).__name__}, not a state dict (a mapping of "
            "names to tensors)"
        )
    for key in ("state_dict", "model", "model_state_dict"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner:
            return inner
    return obj


def _strip_module(state: dict[str, Any]) -> dict[str, Any]:
    """Removes a ``module.`` prefix (``DataParallel``'s) that is on every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_state_dict(path: PathLike) -> dict[str, np.ndarray]:
    """Loads a PyTorch state dict as numpy arrays, executing no code from the file.

    ``.safetensors`` files are read with ``safetensors`` (no ``torch`` needed); other
    files must be PyTorch's zip (or legacy pickle) format and are read with
    ``torch.load(weights_only=True)``. A checkpoint that wraps the state dict under
    ``state_dict``/``model`` is unwrapped, and a ``module.`` prefix on every key (from
    ``DataParallel``) is removed. bfloat16 tensors become float32.

    Args:
      path: the file.

    Returns:
      ``{name: array}`` in the file's order.

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: if the contents are not what the name claims, the restricted
        unpickler refuses an object, or an entry is not a tensor.
      ImportError: if a PyTorch file is given and ``torch`` is not installed.
    """
    path = Path(path)
    head = _head(path, 16)
    size = path.stat().st_size
    if path.suffix == ".safetensors":
        if not _is_safetensors(head, size):
            raise ValueError(f"{str(path)!r} is not a safetensors file (bad header)")
        from safetensors.numpy import load_file

        try:
            return _strip_module(dict(load_file(str(path))))
        except Exception as e:  # safetensors raises its own error types
            raise ValueError(f"{str(path)!r} is not a valid safetensors file: {e}") from e
    if path.suffix not in _TORCH_SUFFIXES:
        raise ValueError(
            f"unknown weight file type {path.suffix!r} of {str(path)!r}; expected one of "
            f"{', '.join((*_TORCH_SUFFIXES, '.safetensors'))}"
        )
    if not (head.startswith(_ZIP_MAGIC) or head[:1] == b"\x80"):
        raise ValueError(
            f"{str(path)!r} is not a PyTorch file (neither a zip archive nor a pickle)"
        )
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"reading {str(path)!r} needs PyTorch: pip install 'cnn_jax[torch]', or save the "
            "weights as .safetensors"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError for a damaged archive, ...
        raise ValueError(
            f"{str(path)!r} could not be read as PyTorch weights with weights_only=True "
            f"(code in weight files is never executed): {e}"
        ) from e
    state = _strip_module({str(k): v for k, v in _unwrap(obj, path).items()})
    return {k: _to_numpy(k, v) for k, v in state.items()}


def _to_torch(torch: Any, x: np.ndarray) -> Any:
    # numpy has no bfloat16 of its own (ml_dtypes'), which torch.from_numpy refuses:
    # pass the bits as int16 and view them as torch's bfloat16, exactly.
    # A copy: torch warns about (and would share) a read-only array, as from a jax.Array.
    if x.dtype.name == "bfloat16":
        return torch.from_numpy(x.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(x.copy())


def save_state_dict(state_dict: Mapping[str, np.ndarray], path: PathLike) -> None:
    """Writes ``{name: array}`` as ``.safetensors`` or a PyTorch file (by the suffix).

    Args:
      state_dict: the arrays.
      path: the file; ``.safetensors`` needs only ``safetensors``, the PyTorch suffixes
        (``.pth``, ``.pt``, ``.bin``, ``.ckpt``) need ``torch``. bfloat16 arrays are
        written as bfloat16 tensors.

    Raises:
      ValueError: for an unknown suffix.
    """
    path = Path(path)
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, str(path))
    elif path.suffix in _TORCH_SUFFIXES:
        import torch

        torch.save({k: _to_torch(torch, v) for k, v in arrays.items()}, path)
    else:
        raise ValueError(
            f"unknown weight file type {path.suffix!r} of {str(path)!r}; expected .safetensors "
            f"or one of {', '.join(_TORCH_SUFFIXES)}"
        )


def _decode(names: Any) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


#: ``load_keras_weights``' default bound on the bytes all datasets may declare together.
MAX_KERAS_BYTES = 4 << 30


def _has(group: Any, name: str) -> bool:
    """Whether ``group`` has a member ``name``, without following any link."""
    return group.get(name, getlink=True) is not None


def _child(group: Any, name: str, path: Path) -> Any:
    """``group[name]``, refusing soft, external and user-defined links on the way."""
    import h5py

    node = group
    for part in name.split("/"):
        where = f"{node.name.rstrip('/')}/{part}"
        if part in ("", "."):
            raise ValueError(f"{str(path)!r}: HDF5 path {where!r} has an empty or '.' component")
        link = node.get(part, getlink=True)
        if link is None:
            raise ValueError(f"{str(path)!r}: HDF5 path {where!r} does not exist")
        if not isinstance(link, h5py.HardLink):
            kind = {h5py.SoftLink: "a soft link", h5py.ExternalLink: "an external link"}.get(
                type(link), "a user-defined link"
            )
            raise ValueError(
                f"{str(path)!r}: HDF5 path {where!r} is {kind}; weight files may hold only "
                "their own groups and datasets"
            )
        node = node[part]
    return node


def _dataset(group: Any, name: str, path: Path) -> Any:
    """A dataset whose data lies in the file itself, with a numeric dtype."""
    import h5py

    ds = _child(group, name, path)
    where = f"{str(path)!r}: dataset {ds.name!r}"
    if not isinstance(ds, h5py.Dataset):
        raise ValueError(f"{where} is a {type(ds).__name__}, not a dataset")
    if ds.is_virtual:
        raise ValueError(f"{where} is a virtual dataset (its data lies in other files); refused")
    if ds.external:
        files = [e[0] for e in ds.external]
        raise ValueError(
            f"{where} has external storage (its data lies in {files}); refused: weights are "
            "read only from the file itself"
        )
    if ds.shape is None or ds.dtype.kind not in "biuf":
        raise ValueError(
            f"{where} holds {ds.dtype} of shape {ds.shape}, not numbers (a weight array)"
        )
    return ds


def _legacy_layers(root: Any, path: Path) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name in _decode(root.attrs["layer_names"]):
        group = _child(root, name, path)
        weight_names = _decode(group.attrs.get("weight_names", []))
        if weight_names:
            out[name] = [_dataset(group, w, path) for w in weight_names]
    return out


def _keras3_layers(group: Any, path: Path, out: dict[str, list[Any]]) -> None:
    import h5py

    for key in group:
        layer = _child(group, key, path)
        if not isinstance(layer, h5py.Group):
            continue
        if _has(layer, "vars"):
            vars_ = _child(layer, "vars", path)
            if len(vars_):
                # Groups are named after the layer's class ("conv2d_3"); the layer's own
                # name is an attribute of its "vars" group.
                name = vars_.attrs.get("name", key)
                name = name.decode("utf8") if isinstance(name, bytes) else str(name)
                out[name] = [_dataset(vars_, str(i), path) for i in range(len(vars_))]
        if _has(layer, "layers"):
            _keras3_layers(_child(layer, "layers", path), path, out)


def _read(layers: dict[str, list[Any]], path: Path, max_bytes: int) -> dict[str, list[np.ndarray]]:
    """Reads the datasets after checking the bytes they declare against ``max_bytes``."""
    total = 0
    for datasets in layers.values():
        for ds in datasets:
            total += math.prod(ds.shape) * ds.dtype.itemsize
            if total > max_bytes:
                raise ValueError(
                    f"{str(path)!r}: dataset {ds.name!r} declares shape {ds.shape} of "
                    f"{ds.dtype}, which brings the file's weights to {total} bytes, more "
                    f"than `max_bytes` (={max_bytes}); nothing was read"
                )
    return {name: [np.asarray(ds[()]) for ds in datasets] for name, datasets in layers.items()}


def load_keras_weights(
    path: PathLike, *, max_bytes: int = MAX_KERAS_BYTES
) -> dict[str, list[np.ndarray]]:
    """Loads a Keras weight file as ``{layer name: [arrays in Keras' order]}``.

    Reads the legacy HDF5 layout (``layer_names``/``weight_names`` attributes, as in the
    ``keras.applications`` downloads and ``model.save('x.h5')``) and the Keras 3
    ``.weights.h5`` layout (``layers/<class name>/vars/<i>``, the layer's name an
    attribute of ``vars``). Only datasets are read: HDF5 holds no code.

    Only the file itself is read: soft, external and user-defined links, datasets with
    external storage and virtual datasets are refused, and so are datasets of anything
    but numbers. The sizes the datasets declare (shape times item size, before any
    decompression) are added up and checked against ``max_bytes`` before anything is
    read, so a small file with a huge compressed dataset is refused, not decompressed.

    Args:
      path: the ``.h5`` or ``.weights.h5`` file.
      max_bytes: the most bytes the weights may take once read
        (``cnn_jax.weights.load_keras`` passes a bound derived from the model).

    Returns:
      The weights of every layer that has some, in file order.

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: if it is not an HDF5 file or has neither layout, or (naming the file
        and the HDF5 path) for a link, external storage, a virtual dataset, a dataset
        that does not hold numbers, or declared sizes beyond ``max_bytes``.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"`max_bytes` must be a non-negative int, got {max_bytes!r}")
    path = Path(path)
    if _head(path, 8) != _HDF5_MAGIC:
        raise ValueError(f"{str(path)!r} is not an HDF5 file (bad signature)")
    import h5py

    with h5py.File(path, "r") as f:
        if "layer_names" in f.attrs:
            layers = _legacy_layers(f, path)
        elif (
            _has(f, "model_weights")
            and "layer_names" in (root := _child(f, "model_weights", path)).attrs
        ):
            layers = _legacy_layers(root, path)
        elif _has(f, "layers"):
            layers = {}
            _keras3_layers(_child(f, "layers", path), path, layers)
        else:
            raise ValueError(
                f"{str(path)!r} is HDF5 but holds no Keras weights (top-level keys: "
                f"{sorted(f.keys())}, attributes: {sorted(f.attrs.keys())})"
            )
        return _read(layers, path, max_bytes)


def describe(weights: Mapping[str, Any]) -> str:
    """A short JSON summary ``{name: shape}`` (for error messages and logs)."""
    return json.dumps(
        {k: list(np.shape(v)) if not isinstance(v, list) else len(v) for k, v in weights.items()}
    )
