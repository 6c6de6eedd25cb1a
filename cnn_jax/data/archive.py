"""Safe reading and unpacking of tar archives.

Every member is checked before anything is written: absolute paths, ``..`` components,
symbolic and hard links, devices, FIFOs and any member that would land outside the
destination are rejected with an :class:`UnsafeArchiveError`. On Pythons that have
them, the extraction itself additionally goes through ``tarfile``'s ``'data'`` filter.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

__all__ = ["UnsafeArchiveError", "iter_archive_files", "safe_extract"]


class UnsafeArchiveError(ValueError):
    """An archive member could land outside the destination or is not a plain file."""


def _member_path(member: tarfile.TarInfo, archive: str | os.PathLike) -> PurePosixPath:
    """Checks one member and returns its normalized relative path.

    Raises:
      UnsafeArchiveError: if the member is a link, a device, has an absolute path or a
        ``..`` component.
    """
    name = member.name
    where = f"archive {os.fspath(archive)!r}: member {name!r}"
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"{where} is a {'symbolic' if member.issym() else 'hard'} link "
            f"(to {member.linkname!r}); links are not allowed"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"{where} is not a regular file or directory (tar type {member.type!r}); "
            "devices, FIFOs and other special files are not allowed"
        )
    if "\x00" in name:
        raise UnsafeArchiveError(f"{where} contains a NUL character")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeArchiveError(f"{where} has an absolute path")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{where} has a '..' component")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def safe_extract(tar_path: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Unpacks a (possibly compressed) tar archive into ``dest``, refusing unsafe members.

    All members are validated first; if any is unsafe, nothing is written at all.

    Args:
      tar_path: the archive (``.tar``, ``.tar.gz``, ``.tar.bz2``, ``.tar.xz``).
      dest: the destination directory (created if needed).

    Returns:
      The paths of the regular files written, in archive order.

    Raises:
      FileNotFoundError: if ``tar_path`` does not exist.
      tarfile.TarError: if ``tar_path`` is not a readable tar archive.
      UnsafeArchiveError: if a member is a symbolic or hard link, a device, FIFO or other
        special file, has an absolute path or a ``..`` component, or would land outside
        ``dest`` (e.g. through a symbolic link already present in ``dest``).
    """
    tar_path = Path(tar_path)
    if not tar_path.is_file():
        raise FileNotFoundError(f"`tar_path` (={os.fspath(tar_path)!r}) is not a file")
    dest = Path(dest)
    root = Path(os.path.realpath(dest))
    with tarfile.open(tar_path, "r:*") as tar:
        members = tar.getmembers()
        checked: list[tuple[tarfile.TarInfo, PurePosixPath]] = []
        for member in members:
            rel = _member_path(member, tar_path)
            target = Path(os.path.realpath(root / rel))
            if not _is_within(target, root):
                raise UnsafeArchiveError(
                    f"archive {os.fspath(tar_path)!r}: member {member.name!r} would be "
                    f"written outside `dest` (={os.fspath(dest)!r}), at {os.fspath(target)!r}"
                )
            checked.append((member, rel))
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        if hasattr(tarfile, "data_filter"):
            try:
                tar.extractall(root, members=[m for m, _ in checked], filter="data")
            except tarfile.FilterError as e:  # pragma: no cover - our checks come first
                raise UnsafeArchiveError(f"archive {os.fspath(tar_path)!r}: {e}") from e
            written = [root / rel for m, rel in checked if m.isfile()]
        else:  # pragma: no cover - Pythons without extraction filters
            for member, rel in checked:
                target = root / rel
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                with src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                written.append(target)
    return written


#: gzip archives up to this size are decompressed into memory by ``iter_archive_files``
#: (reading many small members from memory is about twice as fast as streaming them
#: through ``tarfile``'s decompressor) ...
_IN_MEMORY_LIMIT = 64 << 20
#: ... as long as they decompress to at most this many bytes; larger ones are streamed.
_IN_MEMORY_DECOMPRESSED_LIMIT = 128 << 20
#: ``iter_archive_files``' default bounds on one member's and on all members' sizes.
MAX_MEMBER_BYTES = 64 << 20
MAX_TOTAL_BYTES = 8 << 30


def _open_for_reading(tar_path: str | os.PathLike) -> tarfile.TarFile:
    """Opens a tar archive; a small gzip one is decompressed into memory first.

    The decompression is bounded: an archive whose gzip trailer declares more than
    ``_IN_MEMORY_DECOMPRESSED_LIMIT`` bytes, or that decompresses to more (the trailer
    may lie), is streamed instead.
    """
    size = os.path.getsize(tar_path)
    with open(tar_path, "rb") as f:
        magic = f.read(2)
        f.seek(max(size - 4, 0))
        (declared,) = struct.unpack("<I", f.read(4).rjust(4, b"\0"))
    if (
        magic == b"\x1f\x8b"
        and size <= _IN_MEMORY_LIMIT
        and declared <= _IN_MEMORY_DECOMPRESSED_LIMIT
    ):
        buf = io.BytesIO()
        with gzip.open(tar_path, "rb") as f:
            while chunk := f.read(1 << 20):
                buf.write(chunk)
                if buf.tell() > _IN_MEMORY_DECOMPRESSED_LIMIT:
                    break
            else:
                buf.seek(0)
                return tarfile.open(fileobj=buf, mode="r:")
        del buf
    return tarfile.open(tar_path, "r:*")


def _check_size(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative int, got {value!r}")
    return value


def iter_archive_files(
    tar_path: str | os.PathLike,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Iterator[tuple[str, bytes]]:
    """Streams the regular files of a tar archive without unpacking it to disk.

    Members get the same checks as in :func:`safe_extract`; directories are skipped.
    Sizes are bounded after decompression: a member's size is checked against
    ``max_member_bytes`` before it is read, and the bytes actually read are counted
    against both limits as they stream, so a small archive that decompresses to a
    huge member is refused without ever holding it in memory.

    Args:
      tar_path: the archive.
      max_member_bytes: the most bytes one member may hold.
      max_total_bytes: the most bytes all the members together may hold.

    Yields:
      ``(relative_posix_path, contents)`` for each regular file, in archive order.

    Raises:
      UnsafeArchiveError: for a link, special file, absolute path or ``..`` component.
      ValueError: naming the member and the limit, for a member larger than
        ``max_member_bytes`` or members larger than ``max_total_bytes`` in all.
    """
    _check_size(max_member_bytes, "max_member_bytes")
    _check_size(max_total_bytes, "max_total_bytes")
    where = f"archive {os.fspath(tar_path)!r}"
    total = 0
    with _open_for_reading(tar_path) as tar:
        for member in tar:
            rel = _member_path(member, tar_path)
            if member.isdir():
                continue
            if member.size > max_member_bytes:
                raise ValueError(
                    f"{where}: member {member.name!r} holds {member.size} bytes, more than "
                    f"`max_member_bytes` (={max_member_bytes})"
                )
            src = tar.extractfile(member)
            assert src is not None
            chunks, size = [], 0
            with src:
                while chunk := src.read(min(1 << 20, max_member_bytes + 1 - size)):
                    size += len(chunk)
                    if size > max_member_bytes:
                        raise ValueError(
                            f"{where}: member {member.name!r} holds more than "
                            f"`max_member_bytes` (={max_member_bytes}) bytes"
                        )
                    if total + size > max_total_bytes:
                        raise ValueError(
                            f"{where}: the members up to {member.name!r} hold more than "
                            f"`max_total_bytes` (={max_total_bytes}) bytes in total"
                        )
                    chunks.append(chunk)
            total += size
            yield rel.as_posix(), b"".join(chunks)
