"""The contestants of ``benchmarks.airbench.run``: a JAX or PyTorch airbench94, set up and run.

A contestant is built from a spec (``framework`` and its options) by
:func:`build_contestant`, which does the untimed set-up (JAX: ahead-of-time compilation;
both: a warm-up run). :class:`Remote` keeps it in a spawned process of its own (the two
frameworks' CUDA libraries and memory pools apart), :class:`Local` in this one; both
answer ``run(seed, epoch_eval, verbose)`` with the run's record.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
import traceback
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.airbench import Recipe

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def _jax_info() -> dict[str, Any]:
    import flax
    import jax
    import jaxlib
    import optax

    dev = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "device": f"cpu:{common.cpu_model()}"
        if dev.platform == "cpu"
        else f"{dev.platform}:{dev.device_kind}",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # cnn_jax's XLA:CPU derivative rewrites: on by default on CPU only.
        "cnn_jax_fast_paths": os.environ.get("CNN_JAX_FAST_PATHS", "auto"),
    }


def _torch_info(device: str) -> dict[str, Any]:
    import torch

    name = torch.cuda.get_device_name() if device.startswith("cuda") else common.cpu_model()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": f"{device}:{name}",
        "threads": torch.get_num_threads(),
    }


def build_contestant(spec: dict[str, Any], data: Splits, recipe: Recipe) -> tuple[Any, dict]:
    """Builds one contestant and does its untimed set-up (compile, warm-up).

    Args:
      spec: ``{'kind': 'jax', 'options': {...}}`` or ``{'kind': 'torch', 'mode': 'eager' or
        'compile', 'dtype': 'float16'/'float32'/'auto', 'device': 'cuda'/'cpu'/'auto'}``,
        plus ``'warmup'`` (bool) and ``'host_memory'`` (a choice of
        ``benchmarks.common.apply_host_memory``, applied here before JAX or PyTorch
        start; default ``'default'``).
      data: the splits.
      recipe: the hyperparameters.

    Returns:
      ``(bench, info)``: an object with ``run(seed, epoch_eval=..., log=...)`` and the
      set-up record (versions, compile and warm-up times).
    """
    info: dict[str, Any] = {"spec": spec}
    info["host_memory"] = common.apply_host_memory(spec.get("host_memory", "default"))
    if spec["kind"] == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax

        from benchmarks.airbench.airbench94_jax import JaxAirbench, JaxOptions

        opts = dict(spec["options"])
        if opts.get("dtype", "auto") == "auto":
            opts["dtype"] = "float32" if jax.default_backend() == "cpu" else "float16"
        options = JaxOptions(**opts)
        info.update(_jax_info())
        info["label"] = options.label()
        bench = JaxAirbench(data["train"], data["test"], recipe, options)
        info["compile_s"] = bench.compile()
        info["compile_breakdown_s"] = dict(bench.compile_times)
    else:
        import torch

        from benchmarks.airbench.airbench94_torch import TorchAirbench

        device = spec.get("device", "auto")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = spec.get("dtype", "auto")
        if dtype == "auto":
            dtype = "float16" if device.startswith("cuda") else "float32"
        info.update(_torch_info(device))
        info["label"] = f"torch[{spec['mode']},{dtype}]"
        bench = TorchAirbench(
            data["train"],
            data["test"],
            recipe,
            device=device,
            dtype=getattr(torch, dtype),
            compile=spec["mode"] == "compile",
        )
        info["compile_s"] = None
    if spec.get("warmup", True):
        t0 = time.perf_counter()
        warm = bench.run(10**6, dummy_labels=True)
        info["warmup_wall_s"] = time.perf_counter() - t0
        info["warmup_timed_s"] = warm["time_s"]
    return bench, info


def _worker(conn: Any, spec: dict, data: Splits, recipe: Recipe) -> None:
    """A contestant in its own process: set-up, then runs on request."""
    try:
        bench, info = build_contestant(spec, data, recipe)
        conn.send(("ready", info))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            _, seed, epoch_eval, verbose = msg
            lines: list[str] = []
            result = bench.run(seed, epoch_eval=epoch_eval, log=lines.append if verbose else None)
            result["log"] = lines
            conn.send(("result", result))
    except BaseException:  # report, then exit: the parent raises
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class Remote:
    """A contestant in a spawned process (same interface as :class:`Local`)."""

    def __init__(self, spec: dict, data: Splits, recipe: Recipe) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        # Not a daemon: torch.compile may start worker processes of its own.
        self.proc = ctx.Process(target=_worker, args=(child, spec, data, recipe))
        self.proc.start()
        child.close()
        self.info = self._receive("ready")

    def _receive(self, expected: str) -> Any:
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise RuntimeError(
                f"contestant process died (exit code {self.proc.exitcode})"
            ) from None
        if kind == "error":
            raise RuntimeError(f"contestant failed:\n{payload}")
        assert kind == expected, kind
        return payload

    def run(self, seed: int, epoch_eval: bool, verbose: bool) -> dict[str, Any]:
        """One run in the child process."""
        self.conn.send(("run", seed, epoch_eval, verbose))
        return self._receive("result")

    def close(self) -> None:
        """Stops the child process."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(("stop",))
        self.proc.join(timeout=60)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=10)


class Local:
    """A contestant in this process."""

    def __init__(self, spec: dict, data: Splits, recipe: Recipe) -> None:
        self.bench, self.info = build_contestant(spec, data, recipe)

    def run(self, seed: int, epoch_eval: bool, verbose: bool) -> dict[str, Any]:
        """One run."""
        lines: list[str] = []
        result = self.bench.run(seed, epoch_eval=epoch_eval, log=lines.append if verbose else None)
        result["log"] = lines
        return result

    def close(self) -> None:
        """Nothing to stop."""
