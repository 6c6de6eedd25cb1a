"""``cnn_jax.host_memory``: freed blocks are reused instead of being mapped afresh."""

import platform
import subprocess
import sys
import textwrap

import pytest

from cnn_jax import host_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocates, touches and frees a 256 MiB block twice; prints the page faults of the
# second round (what every training step pays when the block is mapped afresh).
_PROBE = textwrap.dedent(
    """
    import ctypes, resource, sys
    from cnn_jax.host_memory import reuse_host_memory
    applied = reuse_host_memory() if sys.argv[1] == "reuse" else False
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 256 << 20
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


def _probe(mode):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
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


def test_opt_out_and_other_platforms(monkeypatch):
    assert host_memory.reuse_host_memory({host_memory.OPT_OUT_ENV: "0"}) is False
    assert host_memory.reuse_host_memory({host_memory.OPT_OUT_ENV: "off"}) is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert host_memory.reuse_host_memory({}) is False
