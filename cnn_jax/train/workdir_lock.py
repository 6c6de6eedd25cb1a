"""One run per workdir: a lock file, ``<workdir>/.lock``, created atomically.

The first process of a run creates the file with ``O_CREAT | O_EXCL`` (the operating
system lets exactly one creator win) and writes who holds it: ``{"host", "pid",
"start", "token"}``. A second run on the same workdir fails at once with
:class:`WorkdirLockedError` naming the holder. A lock left behind by a process that is
gone (same host, pid no longer running or now another program) is taken over with a
warning; a lock held from another host cannot be checked and stays an error (delete the
file once that run is known to be over). A lock file that cannot be parsed and has not
changed for 10 s (a holder killed between creating and writing it) is taken over with a
warning too; a failed write of the lock removes the file. The holder deletes the file
when it finishes, also on an error.

Multi-host runs: process 0 takes the lock and tells the others its token; the others
check that the file they see (on a shared file system) is their process 0's. If process
0 fails to take it, for any reason, the others are told (token 0) and fail too.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import socket
import time
from typing import Any

from absl import logging

__all__ = ["LOCK_NAME", "WorkdirLock", "WorkdirLockedError"]

LOCK_NAME = ".lock"


class WorkdirLockedError(RuntimeError):
    """Another run holds the workdir's lock."""


def _proc_start(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


#: A lock file that cannot be parsed and has not changed for this long was left by a
#: holder killed between creating and writing it, and is taken over.
_UNREADABLE_STALE_SECONDS = 10.0


def _age_seconds(path: str) -> float:
    """Seconds since ``path`` was last modified (0 if it is gone)."""
    try:
        return time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the holder (on this host) still runs: its pid exists and started when it did."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    started = holder.get("proc_start")
    if started is not None and os.path.isdir("/proc"):
        now = _proc_start(pid)
        return now is None or now == started  # a different start time: the pid was reused
    return True


def _describe(holder: dict[str, Any]) -> str:
    return f"host {holder.get('host')!r}, pid {holder.get('pid')}, started {holder.get('start')}"


class WorkdirLock:
    """The lock of one run on ``workdir``; a context manager.

    Args:
      workdir: the run's directory (it must exist).
      process_index: this process' index; process 0 takes the lock.
      process_count: the number of processes of the run.
    """

    def __init__(self, workdir: str, process_index: int = 0, process_count: int = 1):
        self.path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
        self.process_index = process_index
        self.process_count = process_count
        self.holder: dict[str, Any] | None = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lock (process 0) or checks it (the others).

        Raises:
          WorkdirLockedError: if another run holds it, naming its host, pid and start.
        """
        token = 0
        error: Exception | None = None
        if self.process_index == 0:
            try:
                self._take()
                token = self.holder["token"]
            except Exception as e:  # any failure: the others must not wait for a token
                error = e
        if self.process_count > 1:
            token = self._share(token)
        if error is not None:
            raise error
        if self.process_index != 0:
            self._check(token)

    def _take(self) -> None:
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "token": secrets.randbelow(2**31 - 2) + 1,
            "proc_start": _proc_start(os.getpid()),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue  # released in the meantime: try again
                if holder.get("host") != me["host"] or _alive(holder):
                    raise WorkdirLockedError(
                        f"the workdir {os.path.dirname(self.path)} is in use by another run "
                        f"({_describe(holder)}); wait for it to end or use another "
                        f"--workdir (if that run is over, delete {self.path})"
                    ) from None
                if self._read() == holder:  # still the same dead holder: take it over
                    logging.warning(
                        "taking over the lock of %s: left by a run that is no longer running (%s)",
                        os.path.dirname(self.path),
                        _describe(holder),
                    )
                    os.unlink(self.path)
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(me))
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:  # disk full, EIO: leave no empty lock behind
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                raise
            self.holder = me
            return
        raise WorkdirLockedError(f"could not take the lock {self.path}: it keeps changing")

    def _read(self) -> dict[str, Any] | None:
        """The holder in the lock file, or None; a half-written file is read again for 1 s."""
        for _ in range(20):
            try:
                with open(self.path) as f:
                    text = f.read()
            except FileNotFoundError:
                return None
            try:
                holder = json.loads(text)
                if isinstance(holder, dict):
                    return holder
            except json.JSONDecodeError:
                pass
            time.sleep(0.05)
        if _age_seconds(self.path) > _UNREADABLE_STALE_SECONDS:
            # A holder killed between creating the file and writing it: nobody holds it.
            logging.warning(
                "taking over the lock of %s: unreadable (%r) and unchanged for %.0f s",
                os.path.dirname(self.path),
                text[:80],
                _age_seconds(self.path),
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return None
        raise WorkdirLockedError(
            f"the lock {self.path} is unreadable ({text[:80]!r}); if no run uses this "
            "workdir, delete it"
        )

    def _share(self, token: int) -> int:
        """Process 0's token (0: it failed to take the lock), given to every process."""
        import numpy as np
        from jax.experimental import multihost_utils

        return int(multihost_utils.broadcast_one_to_all(np.int32(token)))

    def _check(self, token: int) -> None:
        if token == 0:
            raise WorkdirLockedError(
                f"process 0 could not take the lock of {os.path.dirname(self.path)}"
            )
        holder = self._read() if os.path.exists(self.path) else None
        if holder is not None and holder.get("token") != token:  # None: not a shared disk
            raise WorkdirLockedError(
                f"the workdir {os.path.dirname(self.path)} is locked by another run "
                f"({_describe(holder)}), not by this run's process 0"
            )

    def release(self) -> None:
        """Deletes the lock file if this process holds it."""
        if self.holder is None:
            return
        try:
            if self._read() == self.holder:
                os.unlink(self.path)
        except (OSError, WorkdirLockedError):
            logging.warning("could not release the lock %s", self.path)
        self.holder = None
