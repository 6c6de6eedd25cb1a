"""Benchmarks of ``cnn_jax``: maintained tools, their shared harness, and studies.

Each tool is a script run from the repository root, ``python -m benchmarks.<tool>``
(``--help`` lists its options; ``--quick`` where there is one is a smoke test). Every
number is a ratio against a reference measured in the same run, interleaved; the
harness is ``benchmarks.common``. One-off investigations live in
``benchmarks.studies``. ``benchmarks/README.md`` lists the tools.
"""
