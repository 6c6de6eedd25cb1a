"""``cnn_jax.host_memory``: freed blocks are reused instead of being mapped afresh."""

import subprocess
import sys
import textwrap

import pytest

from cnn_jax import host_memory

GLIBC = host_memory.has_glibc_malloc()

# Allocates, touches and frees a block (argv[2] MiB) twice; prints the page faults of the
# second round (what every training step pays when the block is mapped afresh).
_PROBE = textwrap.dedent(
    """
    import ctypes, resource, sys
    from cnn_jax.host_memory import reuse_host_memory
    applied = reuse_host_memory(strategy="one_arena") if sys.argv[1] == "reuse" else False
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = int(sys.argv[2]) << 20
    def touch():
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)
    touch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    touch()
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _probe(mode, mib=256):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(mib)], capture_output=True, text=True, check=True
    )
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_freed_memory_is_reused():
    applied, faults = _probe("reuse")
    assert applied
    default_applied, default_faults = _probe("default")
    assert not default_applied
    # glibc's default maps the block afresh: one fault per 4 KiB page (fewer with
    # transparent huge pages); reused, it is already mapped.
    assert faults < 1000 < default_faults, (faults, default_faults)


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_blocks_larger_than_2_gib_are_reused():
    # A step's temporaries can pass 2 GiB (airbench94 at batch 1024: 3.9 GB). A finite
    # trim threshold (the largest int mallopt takes is 2**31 - 1) returns such a block to
    # the kernel on free, and the next step maps all of it afresh (590,000 faults here).
    applied, faults = _probe("reuse", mib=2304)
    assert applied
    assert faults < 1000, faults


# A jitted program with a 128 MiB temporary buffer, run ten times; prints the page
# faults of each run (XLA:CPU allocates and frees that buffer in every run).
_XLA_PROBE = textwrap.dedent(
    """
    import resource, sys
    from cnn_jax.host_memory import reuse_host_memory
    applied = sys.argv[1] != "default" and reuse_host_memory(strategy=sys.argv[1])
    import jax, jax.numpy as jnp
    x = jnp.ones((4096, 4096), jnp.float32)
    v = jnp.ones((4096,), jnp.float32)
    f = jax.jit(lambda x, v: jnp.concatenate([jnp.sin(x), jnp.cos(x)], 0) @ v)
    f = f.lower(x, v).compile()
    assert f.memory_analysis().temp_size_in_bytes >= 128 << 20
    faults = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x, v).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    async_dispatch = jax.config.read("jax_cpu_enable_async_dispatch")
    print(applied, async_dispatch, *faults)
    """
)


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
def test_xla_temporaries_are_reused():
    def probe(mode):
        out = subprocess.run(
            [sys.executable, "-c", _XLA_PROBE, mode], capture_output=True, text=True, check=True
        )
        applied, async_dispatch, *faults = out.stdout.split()
        return applied == "True", async_dispatch == "True", [int(f) for f in faults[1:]]

    # Default: XLA's worker thread maps the 128 MiB block afresh in every run
    # (32,768 pages; fewer with transparent huge pages).
    applied, async_dispatch, faults = probe("default")
    assert not applied and async_dispatch and min(faults) > 10_000, faults
    # calling_thread: the block is reused in most runs (in 20 processes, 0-5 of these 9
    # runs grew the heap again, median 0); without the setting, all 9 fault.
    applied, async_dispatch, faults = probe("calling_thread")
    assert applied and not async_dispatch, faults
    assert sum(f >= 1000 for f in faults) <= 6, faults
    # one_arena: reused in some runs (a run's block is freed asynchronously, sometimes
    # after the next run has allocated its own, and the heap grows again).
    applied, async_dispatch, faults = probe("one_arena")
    assert applied and async_dispatch and min(faults) < 1000, faults


def test_calling_thread_needs_a_backend_not_started_and_strategies_are_checked():
    import jax

    jax.devices()  # the test process's backend has started: nothing may change
    before = jax.config.read("jax_cpu_enable_async_dispatch")
    assert host_memory.reuse_host_memory({}, strategy="calling_thread") is False
    assert jax.config.read("jax_cpu_enable_async_dispatch") == before
    with pytest.raises(ValueError, match=r"`strategy` \(='arena'\) must be one of"):
        host_memory.reuse_host_memory({}, strategy="arena")
    assert host_memory.STRATEGIES[0] == "calling_thread"


def test_opt_out_and_other_platforms(monkeypatch):
    assert host_memory.reuse_host_memory({host_memory.OPT_OUT_ENV: "0"}) is False
    assert host_memory.reuse_host_memory({host_memory.OPT_OUT_ENV: "off"}) is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert host_memory.has_glibc_malloc() is False
    assert host_memory.reuse_host_memory({}) is False
