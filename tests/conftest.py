"""Test set-up: several CPU devices, so multi-device code (pmap, sharded jit) is testable,
and JAX's classic random-bits scheme (its kernels compile faster on the CPU).

``--xla_force_host_platform_device_count`` must be set before JAX initialises its
backends, hence here, before anything imports jax; the suite then makes the same explicit
``cnn_jax.apply_xla_cpu_defaults()`` call as the launcher (importing cnn_jax sets nothing).
"""

import os

NUM_CPU_DEVICES = 8

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (
        f"{_flags} --xla_force_host_platform_device_count={NUM_CPU_DEVICES}".strip()
    )
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# jax 0.10 draws random bits with the "partitionable" threefry scheme by default, whose
# kernel XLA:CPU compiles in ~1.3 s per new shape against ~0.3 s for the classic scheme
# (`python -m benchmarks.init_compile_cpu`; docs/ENGINEERING.md, "Start-up: random bits"): every
# parameter initializer of a new shape paid that. The suite, and the processes it
# starts, use the classic scheme unless the environment says otherwise
# (`JAX_THREEFRY_PARTITIONABLE=1 python -m pytest` runs it with jax's default). The
# library works with either; only the random numbers for a given key differ.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")

import cnn_jax  # noqa: E402

# The suite runs with the XLA:CPU flags that the launcher applies (before any backend).
cnn_jax.apply_xla_cpu_defaults()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", False)


@pytest.fixture
def rng():
    """A numpy random generator with a fixed seed, one per test."""
    import numpy as np

    return np.random.default_rng(0)


def torch_or_skip():
    """Returns the torch module, or skips the calling test when it is not installed."""
    return pytest.importorskip("torch")
