"""The ``.npz`` cache of decoded arrays (see ``cnn_jax.data.datasets``; not public).

Entries are keyed by the options and a SHA-256 of the source files' contents, so a
replaced source file is decoded again whatever its size and modification time. The
cache is an optimisation only: an entry that cannot be read (truncated, corrupt) is
reported in a logged warning naming it and decoded again from the source, and a cache
directory that cannot be written is reported the same way and skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fingerprint", "load_entry", "save_entry"]

_log = logging.getLogger(__name__)

#: Bumped whenever the cached arrays change meaning.
_CACHE_FORMAT = 2

Arrays = dict[str, np.ndarray]

#: What a damaged ``.npz`` raises from ``np.load`` or from reading one of its arrays.
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile)


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fingerprint(
    name: str, source: str, opts: Mapping[str, Any], files: list[Path], extra: str
) -> str:
    """The cache key of a data set's decoded arrays.

    Args:
      name: the data set's canonical name.
      source: ``'local'`` or ``'tfds'``.
      opts: the data set's options.
      files: the source files, hashed by content (SHA-256).
      extra: anything else the arrays depend on (the tfds data directory).

    Returns:
      16 hex digits.
    """
    contents = [[f.name, _digest(f)] for f in files]
    blob = json.dumps(
        [_CACHE_FORMAT, name, source, sorted(opts.items()), contents, extra],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_entry(path: Path) -> Arrays | None:
    """The arrays of a cache file, or ``None`` if it is missing or cannot be read.

    A file that exists but cannot be read is logged (with its path and the error) and
    removed, so that it is written afresh.
    """
    if not path.is_file():
        return None
    try:
        # np.load leaves the file open when it is not a zip: open and close it here.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except _READ_ERRORS as e:
        _log.warning(
            "cache file %s cannot be read (%s: %s); decoding the data set again from its source",
            os.fspath(path),
            type(e).__name__,
            e,
        )
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return None


def save_entry(path: Path, arrays: Arrays) -> bool:
    """Writes a cache file atomically (a temporary file, then a rename).

    Returns:
      Whether it was written; if the directory cannot be created or written, a
      warning naming it is logged and nothing is left behind.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return True
    except OSError as e:
        _log.warning(
            "cannot write the data cache in %s (%s: %s); continuing without a cache "
            "(set `cache_dir`, config.cache_dir or CNN_JAX_CACHE_DIR to a writable folder, "
            "or pass use_cache=False)",
            os.fspath(path.parent),
            type(e).__name__,
            e,
        )
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            Path(tmp).unlink(missing_ok=True)
