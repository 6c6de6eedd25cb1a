"""Benchmarks of ``cnn_jax`` against ``jax.lax``/flax and PyTorch CPU.

Each module is a script, run from the repository root, e.g.
``python -m benchmarks.ops_conv`` (``--quick`` for a smoke test, ``--threads N``).
Every number is a ratio against a reference measured in the same run, interleaved
(see ``benchmarks.common``); the tables go to ``docs/RESULTS.md``.
"""
