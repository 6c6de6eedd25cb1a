"""Reading and writing weight files without executing any code from them.

* PyTorch ``.pth``/``.pt``/``.bin``: ``torch.load(..., weights_only=True)``, whose
  restricted unpickler builds tensors and containers only (``torch`` is an optional
  dependency: ``pip install cnn_jax[torch]``).
* ``.safetensors``: a JSON header and raw buffers, read with ``safetensors.numpy``.
* Keras ``.h5`` (the legacy format of ``keras.applications`` files and of
  ``model.save_weights('x.h5')``/``model.save('x.h5')``) and Keras 3 ``.weights.h5``:
  plain HDF5 datasets read with ``h5py``.

A file's contents are checked against what its name claims (the zip or pickle
signature of a PyTorch file, the header of a safetensors file, the HDF5 signature), so
a renamed or corrupted file is an error rather than garbage weights.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_keras_weights", "load_state_dict", "save_state_dict"]

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
            return dict(load_file(str(path)))
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
    state = _unwrap(obj, path)
    keys = list(state)
    if keys and all(str(k).startswith("module.") for k in keys):
        state = {str(k)[len("module.") :]: v for k, v in state.items()}
    return {str(k): _to_numpy(str(k), v) for k, v in state.items()}


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


def _legacy_layers(root: Any) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for name in _decode(root.attrs["layer_names"]):
        group = root[name]
        weight_names = _decode(group.attrs.get("weight_names", []))
        if weight_names:
            out[name] = [np.asarray(group[w][()]) for w in weight_names]
    return out


def _keras3_layers(group: Any, out: dict[str, list[np.ndarray]]) -> None:
    for key, layer in group.items():
        if "vars" in layer and len(layer["vars"]):
            vars_ = layer["vars"]
            # Groups are named after the layer's class ("conv2d_3"); the layer's own
            # name is an attribute of its "vars" group.
            name = vars_.attrs.get("name", key)
            name = name.decode("utf8") if isinstance(name, bytes) else str(name)
            out[name] = [np.asarray(vars_[str(i)][()]) for i in range(len(vars_))]
        if "layers" in layer:
            _keras3_layers(layer["layers"], out)


def load_keras_weights(path: PathLike) -> dict[str, list[np.ndarray]]:
    """Loads a Keras weight file as ``{layer name: [arrays in Keras' order]}``.

    Reads the legacy HDF5 layout (``layer_names``/``weight_names`` attributes, as in the
    ``keras.applications`` downloads and ``model.save('x.h5')``) and the Keras 3
    ``.weights.h5`` layout (``layers/<class name>/vars/<i>``, the layer's name an
    attribute of ``vars``). Only datasets are read: HDF5 holds no code.

    Args:
      path: the ``.h5`` or ``.weights.h5`` file.

    Returns:
      The weights of every layer that has some, in file order.

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: if it is not an HDF5 file or has neither layout.
    """
    path = Path(path)
    if _head(path, 8) != _HDF5_MAGIC:
        raise ValueError(f"{str(path)!r} is not an HDF5 file (bad signature)")
    import h5py

    with h5py.File(path, "r") as f:
        if "layer_names" in f.attrs:
            return _legacy_layers(f)
        if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
            return _legacy_layers(f["model_weights"])
        if "layers" in f:
            out: dict[str, list[np.ndarray]] = {}
            _keras3_layers(f["layers"], out)
            return out
        raise ValueError(
            f"{str(path)!r} is HDF5 but holds no Keras weights (top-level keys: "
            f"{sorted(f.keys())}, attributes: {sorted(f.attrs.keys())})"
        )


def describe(weights: Mapping[str, Any]) -> str:
    """A short JSON summary ``{name: shape}`` (for error messages and logs)."""
    return json.dumps(
        {k: list(np.shape(v)) if not isinstance(v, list) else len(v) for k, v in weights.items()}
    )
