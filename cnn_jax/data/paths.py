"""Where the data sets are read from and where their decoded arrays are cached.

The data directory is, in order of precedence:

1. the ``data_dir`` argument (``config.data_dir`` in the input pipeline);
2. the environment variable ``CNN_JAX_DATA_DIR``;
3. ``<repository root>/../shared/data``, found relative to this package (the layout of
   a development checkout; it is only used when that folder exists).

The data directory is only ever read. Decoded arrays are cached as ``.npz`` files in the
cache directory: the ``cache_dir`` argument (``config.cache_dir``), else the environment
variable ``CNN_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnn_jax``, else
``~/.cache/cnn_jax``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CACHE_DIR_ENV",
    "DATA_DIR_ENV",
    "DatasetNotFoundError",
    "default_data_dir",
    "resolve_cache_dir",
    "resolve_data_dir",
]

#: Environment variable naming the data directory.
DATA_DIR_ENV = "CNN_JAX_DATA_DIR"
#: Environment variable naming the cache directory.
CACHE_DIR_ENV = "CNN_JAX_CACHE_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not where the local reader looks for them."""


def default_data_dir() -> Path:
    """The development default ``<repository root>/../shared/data`` (may not exist).

    Returns:
      The path, computed relative to this package's location.
    """
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Resolves the data directory and says where the setting came from.

    Args:
      data_dir: an explicit directory, or ``None`` to use ``CNN_JAX_DATA_DIR`` or the
        development default.

    Returns:
      ``(path, origin)``, where ``origin`` describes the setting (used in error messages).
      The path is not checked for existence.

    Raises:
      TypeError: if ``data_dir`` is not a path.
    """
    if data_dir is not None:
        if not isinstance(data_dir, str | os.PathLike):
            raise TypeError(f"`data_dir` must be a path or None, got {data_dir!r}")
        return Path(data_dir).expanduser(), "the `data_dir` argument (config.data_dir)"
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser(), f"the environment variable {DATA_DIR_ENV}"
    return default_data_dir(), "the default <repository root>/../shared/data"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Resolves the directory where decoded arrays are cached.

    Args:
      cache_dir: an explicit directory, or ``None`` for ``CNN_JAX_CACHE_DIR``,
        ``$XDG_CACHE_HOME/cnn_jax`` or ``~/.cache/cnn_jax``.

    Returns:
      The path (created lazily, when something is cached).

    Raises:
      TypeError: if ``cache_dir`` is not a path.
    """
    if cache_dir is not None:
        if not isinstance(cache_dir, str | os.PathLike):
            raise TypeError(f"`cache_dir` must be a path or None, got {cache_dir!r}")
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cnn_jax"
