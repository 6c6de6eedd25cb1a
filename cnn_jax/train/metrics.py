"""Metrics: a JSONL log, a CSV log and TensorBoard event files in ``workdir``; a console bar."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from absl import logging

__all__ = ["MetricWriter", "Progress", "read_jsonl"]


def read_jsonl(path: str) -> list[dict[str, Any]] | None:
    """The rows of a ``metrics.jsonl``, or None if there is no file.

    A torn last line (a write cut short, e.g. by a full disk) is dropped with a
    warning; a bad line before the last is an error.

    Raises:
      ValueError: naming the file and the line, for a bad line that is not the last.
    """
    if not os.path.exists(path):
        return None
    with open(path) as f:
        lines = f.read().split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a metrics row")
        except ValueError as e:
            if any(rest.strip() for rest in lines[i + 1 :]):
                raise ValueError(f"{path}, line {i + 1}: not a metrics row ({e})") from e
            logging.warning("%s: dropping a torn last line (%r)", path, line[:80])
            continue
        rows.append(row)
    return rows


def atomic_write(path: str, text: str) -> None:
    """Writes ``text`` to a temporary file in the same folder, then renames it over ``path``.

    A reader sees the old file or the new one, never a torn one.
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MetricWriter:
    """Writes scalar metrics as ``metrics.jsonl``, ``metrics.csv`` and TensorBoard events.

    One JSON object per line (``{"step": .., "split": .., "name": value, ...}``) and a
    long-format CSV (``step,split,name,value``). When a run resumes from a checkpoint at
    step ``s``, rows after ``s`` (written by the interrupted run past its last
    checkpoint) are dropped, so the JSONL and CSV files describe exactly one run; a torn
    last line (a write cut short) is dropped with a warning, and the files are rewritten
    through a temporary file and a rename. TensorBoard event files are appended to, not
    rewritten: after a resume they hold the interrupted run's points past ``s`` too.

    Args:
      workdir: the run's directory.
      enabled: write nothing when False (every process but the first, multi-host).
      resume_step: drop logged rows with a larger step (None: keep everything).
    """

    def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self._jsonl = os.path.join(workdir, "metrics.jsonl")
        self._csv = os.path.join(workdir, "metrics.csv")
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if resume_step is not None:
            self._truncate(resume_step)
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._tb = EventFileWriter(os.path.join(workdir, "tensorboard"))

    def _truncate(self, step: int) -> None:
        """Drops rows after ``step`` (and a torn last line), rewriting atomically."""
        rows = read_jsonl(self._jsonl)
        if rows is not None:
            atomic_write(
                self._jsonl, "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step)
            )
        if os.path.exists(self._csv):
            with open(self._csv, newline="") as f:
                lines = list(csv.reader(f))
            keep = [lines[0]] if lines else [["step", "split", "name", "value"]]
            for r in lines[1:]:
                try:
                    if len(r) == 4 and int(r[0]) <= step:
                        float(r[3])
                        keep.append(r)
                except ValueError:  # a torn last row
                    continue
            buf = io.StringIO()
            csv.writer(buf).writerows(keep)
            atomic_write(self._csv, buf.getvalue())

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        """Logs scalars for one step.

        Args:
          step: the training step.
          split: ``'train'``, ``'test'``, ...
          metrics: name -> value (floats).
        """
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        with open(self._jsonl, "a") as f:
            f.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
        new = not os.path.exists(self._csv)
        with open(self._csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "split", "name", "value"])
            for k, v in values.items():
                w.writerow([int(step), split, k, repr(v)])
        self._write_tensorboard(step, split, values)

    def _write_tensorboard(self, step: int, split: str, values: Mapping[str, float]) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=f"{split}/{k}", simple_value=v)
                for k, v in values.items()
                if math.isfinite(v)
            ]
        )
        self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
        self._tb.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class Progress:
    """A console progress bar with rate and ETA (a plain line per update if not a TTY).

    Args:
      total: the last step.
      start: the first step (after a resume).
      stream: where to write (default stderr).
      enabled: print nothing when False.
    """

    def __init__(
        self, total: int, start: int = 0, stream: TextIO | None = None, enabled: bool = True
    ):
        self.total, self.start = total, start
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._t0 = time.perf_counter()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._open_line = False  # a TTY bar drawn without its newline

    def update(self, step: int, info: Mapping[str, Any] | None = None) -> None:
        """Shows the state at ``step``.

        Args:
          step: the current step.
          info: extra values to show (e.g. the loss).
        """
        if not self.enabled:
            return
        done = step - self.start
        elapsed = time.perf_counter() - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        frac = step / max(self.total, 1)
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        extra = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (info or {}).items()
        )
        line = (f"[{bar}] {step}/{self.total} {rate:.1f} steps/s ETA {_fmt(eta)} {extra}").rstrip()
        if self._tty:
            self.stream.write("\r" + line)
            self._open_line = step < self.total
            if not self._open_line:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end_line(self) -> None:
        """Ends a bar drawn on a terminal, so that a log line starts on a line of its own."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False


def _fmt(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
