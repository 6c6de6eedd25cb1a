"""``cnn_jax.xla_defaults``: importing cnn_jax sets nothing; the explicit call sets the flags.

The flags' speed is measured in ``benchmarks/`` (docs/RESULTS.md), not here; these tests
check the rules, and, in fresh processes, that the flag reaches XLA (the compiled
convolution is XLA's own instead of a YNNPACK fusion) and that opting out works.
"""

import json
import os
import subprocess
import sys

import pytest

import cnn_jax
from cnn_jax import xla_defaults

FLAG = xla_defaults.DEFAULT_XLA_FLAGS[0]


@pytest.fixture
def no_backend(monkeypatch):
    monkeypatch.setattr(xla_defaults, "_backends_initialized", lambda: False)


def test_appends_to_existing_flags(no_backend):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert xla_defaults.apply(env) == (FLAG,)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {FLAG}"
    assert xla_defaults.apply(env) == ()  # idempotent
    env = {}
    assert xla_defaults.apply(env) == (FLAG,) and env["XLA_FLAGS"] == FLAG


def test_the_users_setting_wins(no_backend):
    mine = "--xla_cpu_experimental_ynn_fusion_type=+dot"
    env = {"XLA_FLAGS": mine}
    assert xla_defaults.apply(env) == ()
    assert env["XLA_FLAGS"] == mine


@pytest.mark.parametrize("value", ["0", "false", "OFF"])
def test_opt_out(no_backend, value):
    env = {xla_defaults.OPT_OUT_ENV: value}
    assert xla_defaults.apply(env) == ()
    assert "XLA_FLAGS" not in env


def test_nothing_once_a_backend_exists(monkeypatch):
    monkeypatch.setattr(xla_defaults, "_backends_initialized", lambda: True)
    env = {}
    assert xla_defaults.apply(env) == () and env == {}


def test_untested_jaxlib_gets_no_flags(no_backend, monkeypatch):
    monkeypatch.setattr(xla_defaults, "_jaxlib_version", lambda: (0, 99))
    env = {}
    assert xla_defaults.apply(env) == () and env == {}


def test_backends_exist_in_this_process():
    import jax

    jax.devices()
    assert xla_defaults._backends_initialized()


_PROBE = """
import cnn_jax
from cnn_jax import xla_defaults
cnn_jax.apply_xla_cpu_defaults()
import jax, jax.numpy as jnp
from jax import lax
dn = ('NHWC', 'HWIO', 'NHWC')
f = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dn))
text = f.lower(jnp.ones((8, 16, 16, 32)), jnp.ones((3, 3, 32, 32))).compile().as_text()
print(xla_defaults.APPLIED, 'ynn_fusion' in text)
"""


@pytest.mark.parametrize("opt_out", [False, True])
def test_flag_reaches_xla(opt_out):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    if opt_out:
        env[xla_defaults.OPT_OUT_ENV] = "0"
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    if opt_out:
        assert out == "() True"  # jaxlib 0.10's default: a YNNPACK convolution
    else:
        assert out == f"('{FLAG}',) False"


def test_apply_is_the_public_call():
    assert cnn_jax.apply_xla_cpu_defaults is xla_defaults.apply_xla_cpu_defaults
    assert xla_defaults.apply is xla_defaults.apply_xla_cpu_defaults  # the old name


def test_applied_records_what_the_call_appended(no_backend, monkeypatch):
    monkeypatch.setattr(xla_defaults, "APPLIED", ())
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.delenv(xla_defaults.OPT_OUT_ENV, raising=False)
    assert xla_defaults.apply_xla_cpu_defaults() == (FLAG,)
    assert xla_defaults.APPLIED == (FLAG,)
    assert os.environ["XLA_FLAGS"].endswith(FLAG)
    assert xla_defaults.apply_xla_cpu_defaults({}) == (FLAG,)  # another mapping: not recorded
    assert xla_defaults.APPLIED == (FLAG,)


# Imports cnn_jax and every module under it in a fresh process and reports what changed:
# the environment, JAX's configuration values, and whether a backend was created.
_IMPORT_PROBE = """
import importlib, json, os, pkgutil, sys
env_before = dict(os.environ)
import jax
config_before = {k: repr(v) for k, v in jax.config.values.items()}
import cnn_jax
names = sorted(m.name for m in pkgutil.walk_packages(cnn_jax.__path__, "cnn_jax."))
for name in names:
    importlib.import_module(name)
config_after = {k: repr(v) for k, v in jax.config.values.items()}
from cnn_jax import xla_defaults
print(json.dumps(dict(
    modules=names,
    env_changed=sorted(k for k in set(env_before) | set(os.environ)
                       if env_before.get(k) != os.environ.get(k)),
    config_changed=sorted(k for k in set(config_before) | set(config_after)
                          if config_before.get(k) != config_after.get(k)),
    backend=xla_defaults._backends_initialized(),
)))
"""


def test_import_changes_nothing_global():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_defaults.OPT_OUT_ENV)}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report["modules"]) > 20  # every subpackage and module was imported
    assert report["env_changed"] == []  # XLA_FLAGS unchanged, nothing else set
    assert report["config_changed"] == []
    assert report["backend"] is False  # importing does not start JAX's backends either
