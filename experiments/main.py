"""Launches a training run: ``python -m experiments.main --config=CONFIG --workdir=DIR``.

Examples:
  python -m experiments.main --config=experiments/configs/lenet5_mnist.py --workdir=runs/lenet5
  python -m experiments.main --config=experiments/configs/lenet5_mnist.py:modern \
      --config.optim.learning_rate=0.05 --workdir=runs/lenet5_modern

The config is locked: overriding a key that does not exist is an error naming the key
and the known keys nearby. A run that stops on a fault it can name (a checkpoint that
cannot be written, no intact checkpoint, a checkpoint that does not fit the model, a
config that changes a resumed run, divergence, a locked workdir) prints one error line
and exits with status 1 (docs/FAULTS.md). Multi-host:
pass ``--coordinator_address=host:port --num_processes=N --process_id=I`` (or nothing on
a TPU pod, where ``jax.distributed.initialize()`` finds them).
"""

import difflib
import functools
import logging as std_logging
import os
import sys
from pathlib import Path
from typing import Any

from absl import app, flags, logging
from ml_collections import config_flags

import cnn_jax  # changes nothing on import; main() applies its XLA flags

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defines the flags (when run as a script, so that importing defines none)."""
    config_flags.DEFINE_config_file(
        "config", None, "Experiment config file (optionally :variant).", lock_config=True
    )
    flags.DEFINE_string(
        "workdir", None, "Directory for checkpoints and metrics; resumes if it holds a checkpoint."
    )
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
    flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
    flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
    flags.DEFINE_bool(
        "distributed",
        False,
        "Call jax.distributed.initialize() with no arguments (TPU pods, SLURM).",
    )
    flags.DEFINE_enum(
        "host_memory",
        "default",
        ["default", "calling_thread", "one_arena"],  # cnn_jax.host_memory.STRATEGIES, before JAX
        "Keep freed host memory for reuse (cnn_jax.host_memory.reuse_host_memory and its "
        "strategies): fewer page faults in XLA:CPU steps with large activations.",
    )
    flags.mark_flags_as_required(["config", "workdir"])


_OWN_CODE = tuple(
    os.path.realpath(p) + os.sep
    for p in (Path(cnn_jax.__file__).parent, Path(__file__).parent)  # wherever installed
)


@functools.lru_cache(maxsize=1024)
def _is_own_code(pathname: str) -> bool:
    return os.path.realpath(pathname).startswith(_OWN_CODE)


def _own_info_only(record: std_logging.LogRecord) -> bool:
    """Keeps warnings and errors, and INFO lines from cnn_jax and experiments only.

    Orbax logs every checkpoint step and JAX its backend probing at INFO.
    """
    return record.levelno >= std_logging.WARNING or _is_own_code(record.pathname)


def _parse_flags(argv: list[str]) -> list[str]:
    """Parses the flags; an override of a key the config lacks is a flags error naming it."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as e:  # ml_collections' error for a locked config
        message = _unknown_override(argv) or f"bad --config override: {e!r}"
    sys.stderr.write(f"FATAL Flags parsing error: {message}\n")
    sys.exit(1)


def _unknown_override(argv: list[str]) -> str | None:
    """Names the first ``--config.a.b=...`` whose key is unknown, and the keys nearby."""
    from cnn_jax.train.config import default_config
    from cnn_jax.train.config_record import flatten

    known = set(flatten(default_config()))
    known |= {k.rsplit(".", 1)[0] for k in known if "." in k}
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config.") :].split("=", 1)[0]
        if key in known or key.split(".")[0] in ("model_kwargs", "dataset_options"):
            continue
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        siblings = sorted(k for k in known if k.rsplit(".", 1)[0] == parent and "." in k) or sorted(
            k for k in known if "." not in k
        )
        near = difflib.get_close_matches(key, sorted(known), n=5, cutoff=0.6)
        return (
            f"--config.{key}: the config has no key {key!r}; "
            + (f"did you mean {', '.join(near)}? " if near else "")
            + f"known keys{' of ' + parent if parent else ''}: {', '.join(siblings)}"
        )
    return None


#: The two ways to give the run length (set exactly one).
RUN_LENGTH_KEYS = ("num_epochs", "num_train_steps")


def run_length_from_command_line(config: Any, argv: list[str]) -> None:
    """One run length given by ``--config.<key>`` replaces the config file's other one.

    A config file sets ``num_epochs`` or ``num_train_steps``; ``--config.num_train_steps=N``
    on a file that sets epochs (or the reverse) then means "this long instead", not "both"
    (which ``validate_config`` refuses). Flags cannot set None, so the launcher does it.
    """
    given = [
        key
        for key in RUN_LENGTH_KEYS
        if any(a == f"--config.{key}" or a.startswith(f"--config.{key}=") for a in argv[1:])
    ]
    if len(given) == 1:
        (other,) = (k for k in RUN_LENGTH_KEYS if k not in given)
        config[other] = None


def main(argv: list[str]) -> None:
    """Sets up the process (host memory, XLA flags, TensorFlow), joins the hosts, trains."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.host_memory != "default":  # before TensorFlow or JAX start their threads
        from cnn_jax.host_memory import reuse_host_memory

        if not reuse_host_memory(strategy=FLAGS.host_memory):
            logging.warning(
                "--host_memory=%s: not applied (opted out, not Linux/glibc, or JAX started)",
                FLAGS.host_memory,
            )
    if not FLAGS["verbosity"].present:  # the loop's INFO lines, not orbax's
        logging.get_absl_handler().addFilter(_own_info_only)
    try:  # tf.data must not take the accelerators' memory.
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
    except ImportError:
        pass
    cnn_jax.apply_xla_cpu_defaults()  # process-wide XLA:CPU flags, before any backend starts
    import jax

    if FLAGS.coordinator_address or FLAGS.distributed:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    from cnn_jax.train import train_and_evaluate
    from cnn_jax.train.checkpoint import (
        CheckpointMismatchError,
        CheckpointWriteError,
        CorruptCheckpointError,
    )
    from cnn_jax.train.config_record import ConfigChangedError
    from cnn_jax.train.divergence import TrainingDivergedError
    from cnn_jax.train.workdir_lock import WorkdirLockedError

    run_length_from_command_line(FLAGS.config, sys.argv)
    try:
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (
        CheckpointWriteError,
        CorruptCheckpointError,
        CheckpointMismatchError,
        ConfigChangedError,
        TrainingDivergedError,
        WorkdirLockedError,
    ) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(1)


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=_parse_flags)
