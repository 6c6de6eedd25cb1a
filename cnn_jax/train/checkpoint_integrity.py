"""Checkpoint integrity: a SHA-256 of each step folder, written after the save completes.

A step folder ``<checkpoints>/<step>`` gets two sidecar files once orbax has committed it:
``cnn_jax_extra.json`` (the loop's own state that is not an array, e.g. the training
metrics not yet logged) and then ``cnn_jax_sha256.json`` (the digest of every other file
of the folder, paths included). ``<checkpoints>/cnn_jax_checksums.json`` records the first
step saved this way: a newer step folder without a digest was interrupted between the
commit and the digest and is not complete; an older one was written by an earlier
version and is restored unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from cnn_jax.train.metrics import atomic_write

__all__ = [
    "CHECKSUM_FILE",
    "EXTRA_FILE",
    "MARKER_FILE",
    "CorruptCheckpointError",
    "atomic_write_json",
    "digest",
    "read_extra",
    "read_marker",
    "verify",
    "write_sidecars",
]

CHECKSUM_FILE = "cnn_jax_sha256.json"
EXTRA_FILE = "cnn_jax_extra.json"
MARKER_FILE = "cnn_jax_checksums.json"


class CorruptCheckpointError(ValueError):
    """A checkpoint's files do not match their checksum, or cannot be read."""


def atomic_write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as JSON through a temporary file renamed over ``path``."""
    atomic_write(path, json.dumps(obj))


def digest(step_dir: str) -> str:
    """SHA-256 over the relative paths and contents of a step folder's files (sorted).

    The digest file itself is left out.
    """
    h = hashlib.sha256()
    files = []
    for root, _, names in os.walk(step_dir):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            if rel != CHECKSUM_FILE:
                files.append(rel)
    for rel in sorted(files):
        h.update(rel.encode() + b"\0")
        with open(os.path.join(step_dir, rel), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def write_sidecars(directory: str, step: int, extra: Any) -> None:
    """The marker (once), ``extra`` (if not None) and then the digest of step ``step``."""
    marker = os.path.join(directory, MARKER_FILE)
    if not os.path.exists(marker):
        atomic_write_json(marker, {"since_step": int(step)})
    step_dir = os.path.join(directory, str(step))
    if extra is not None:
        atomic_write_json(os.path.join(step_dir, EXTRA_FILE), extra)
    atomic_write_json(os.path.join(step_dir, CHECKSUM_FILE), {"sha256": digest(step_dir)})


def read_marker(directory: str) -> int | None:
    """The first step saved with a digest, or None (no marker, or an unreadable one)."""
    try:
        with open(os.path.join(directory, MARKER_FILE)) as f:
            return int(json.load(f)["since_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verify(directory: str, step: int) -> bool:
    """Checks step ``step``'s files against its digest.

    Returns:
      True if verified; False if the step predates digests (restored unverified).

    Raises:
      CorruptCheckpointError: naming the step folder, if the digest is missing (after
        the marker's step), unreadable or does not match.
    """
    step_dir = os.path.join(directory, str(step))
    path = os.path.join(step_dir, CHECKSUM_FILE)
    since = read_marker(directory)
    if not os.path.exists(path):
        if since is None or step < since:
            return False
        raise CorruptCheckpointError(
            f"checkpoint {step} ({step_dir}) has no {CHECKSUM_FILE}: its save was interrupted"
        )
    try:
        with open(path) as f:
            expected = json.load(f)["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(
            f"checkpoint {step} ({step_dir}): unreadable {CHECKSUM_FILE} ({e})"
        ) from e
    try:
        actual = digest(step_dir)
    except OSError as e:
        raise CorruptCheckpointError(f"checkpoint {step} ({step_dir}) cannot be read: {e}") from e
    if actual != expected:
        raise CorruptCheckpointError(
            f"checkpoint {step} ({step_dir}) does not match its SHA-256 (files changed or "
            "damaged since it was written)"
        )
    return True


def read_extra(directory: str, step: int) -> Any:
    """The ``extra`` saved with step ``step``, or None if it has none."""
    path = os.path.join(directory, str(step), EXTRA_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CorruptCheckpointError(f"checkpoint {step}: unreadable {path} ({e})") from e
