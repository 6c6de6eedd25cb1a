"""The benchmarks' shared harness, in parts; ``benchmarks.common`` gathers it in one place.

* ``timing``: interleaved rounds of samples, medians, ratios and their spread;
* ``report``: the machine, versions, date, load and command around a markdown table;
* ``programs``: compiled JAX programs as timed candidates, jaxpr/HLO comparison;
* ``cases``: the op benchmarks' cases against a JAX reference and PyTorch.

The set-up of a benchmark process (command line, threads, XLA flags, host memory) is in
``benchmarks.common`` itself: it must run before JAX creates a backend.
"""
