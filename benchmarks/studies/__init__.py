"""One-off investigations: scripts that answered one question, kept to answer it again.

Unlike the maintained tools in ``benchmarks/``, a study measures one lever or looks
inside one program; its findings are in ``docs/ENGINEERING.md`` ("CPU tuning"). Each
runs as ``python -m benchmarks.studies.<name>`` and uses ``benchmarks.common``:

* ``profile_step_cpu``: where the time of one training step goes on XLA:CPU
  (``jax.profiler`` totals per op kind, page faults, temporaries, YNNPACK fusions);
* ``xla_flags_cpu``: XLA:CPU flag settings measured against each other, each in its
  own process, interleaved.
"""
