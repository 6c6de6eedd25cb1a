"""Smoke tests of the CPU benchmark helpers (no timing is asserted)."""

import functools
import json
import os
import time

import pytest

from benchmarks import common, train_step_cpu
from benchmarks.studies import profile_step_cpu
from cnn_jax import host_memory


def test_host_memory_setting_is_parsed(monkeypatch):
    # The real call would change malloc for the rest of this test process: record it.
    calls = []

    def record(strategy):
        calls.append(strategy)
        return strategy == "one_arena"

    monkeypatch.setattr(host_memory, "reuse_host_memory", record)
    assert common.parse_args("x", []).host_memory == "default"
    assert calls == []
    settings = common.parse_args("x", ["--host-memory", "reuse"])
    assert calls == ["one_arena"] and settings.host_memory == "reuse, one_arena"
    assert any("host memory" in line for line in common.environment_lines(settings, 2))
    # The benchmarks name every strategy (written out: common.py imports no cnn_jax).
    assert set(common.HOST_MEMORY_CHOICES) == {"default", "reuse", *host_memory.STRATEGIES}
    settings = common.parse_args("x", ["--host_memory", "calling_thread"])  # either spelling
    assert calls[-1] == "calling_thread"
    assert settings.host_memory == "default (calling_thread not applied)"


def test_profile_step_prints_op_kinds(capsys, tmp_path):
    hlo = tmp_path / "step.hlo"
    argv = ["--model", "lenet5", "--steps", "1", "--top", "5", "--hlo", str(hlo), "--batch", "8"]
    profile_step_cpu.main(argv)
    out = capsys.readouterr().out
    assert "batch 8," in out.splitlines()[0]
    assert "page faults per step" in out
    temp = [line for line in out.splitlines() if "temporaries of the compiled step" in line]
    assert len(temp) == 1 and int(temp[0].split(": ")[1].split()[0].replace(",", "")) > 0
    assert "YNNPACK fusions by op: " in out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert 1 <= len(rows) <= 5
    assert "convolution" in hlo.read_text()
    with pytest.raises(SystemExit):
        profile_step_cpu.main(["--model", "lenet5", "--batch", "0"])
    assert "--batch (=0) must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the shared option, either spelling
        profile_step_cpu.main(["--model", "lenet5", "--host_memory", "everything"])
    assert "invalid choice: 'everything'" in capsys.readouterr().err


def test_measure_orders():
    """Per sample, the candidates alternate; per block, each candidate's samples follow
    one untimed call of itself. Two warm-up calls each, in both orders."""
    for order, expected_round in (("sample", ["a", "b"] * 3), ("block", ["a"] * 4 + ["b"] * 4)):
        calls: list[str] = []

        def candidate(name, calls=calls):
            # Slower than PREWARM_BELOW_S: no extra untimed call before each sample.
            calls.append(name)
            time.sleep(common.PREWARM_BELOW_S)

        timed = {k: functools.partial(candidate, k) for k in ("a", "b")}
        t = common.measure(timed, rounds=2, reps=3, order=order)
        assert calls[:4] == ["a", "a", "b", "b"]
        assert calls[4:] == expected_round * 2
        assert all(len(r) == 3 for v in t.values() for r in v.rounds)
    assert common.parse_args("x", []).order == "sample"
    assert common.parse_args("x", [], order="block").order == "block"
    assert common.parse_args("x", ["--order", "sample"], order="block").order == "sample"


def test_measure_rejects_an_unknown_order():
    with pytest.raises(ValueError, match="`order` \\(='x'\\)"):
        common.measure({"a": lambda: None}, rounds=1, reps=1, order="x")


def test_ynn_fusions_are_counted_by_op():
    hlo = "\n".join(
        [
            "  %ynn_fusion.5 = f32[1,728]{1,0} fusion(%a, %b), kind=kCustom, calls=%f.5, "
            'metadata={op_name="jit(f)/transpose(jvp(M))/Conv_2/reduce_sum" stack_frame_id=3}, '
            'backend_config={"fusion_config":{"kind":"__ynn_fusion"}}',
            "  %ynn_fusion.6 = f32[8,8]{1,0} fusion(%c), kind=kCustom, calls=%f.6, "
            'metadata={op_name="jit(f)/M/dot_general"}, '
            'backend_config={"fusion_config":{"kind":"__ynn_fusion"}}',
            "  %ynn_fusion.7 = f32[8]{0} fusion(%c), kind=kCustom, calls=%f.7, "
            'backend_config={"fusion_config":{"kind":"__ynn_fusion"}}',
            "  %add_fusion = f32[8]{0} fusion(%c), kind=kLoop, calls=%f.8, "
            'metadata={op_name="jit(f)/M/reduce_sum"}',
            '%fused_computation.5 (p: f32[8]) -> f32[8] {  // "__ynn_fusion" in a comment',
        ]
    )
    assert train_step_cpu.ynn_fusions(hlo) == {"?": 1, "dot_general": 1, "reduce_sum": 1}
    assert train_step_cpu.ynn_fusions("") == {}


def test_init_compile_alternates_the_schemes_and_restores_the_setting():
    import jax

    from benchmarks import init_compile_cpu

    calls = []
    times = init_compile_cpu.measure(
        ["a", "b"], rounds=2, compile_fn=lambda m, p: calls.append((m, p)) or len(calls)
    )
    first = [("a", True), ("a", False), ("b", True), ("b", False)]
    second = [("a", False), ("a", True), ("b", False), ("b", True)]
    assert calls == first + second
    assert times["a"] == {"partitionable": [1, 6], "classic": [2, 5]}
    before = jax.config.jax_threefry_partitionable
    assert init_compile_cpu.compile_init("lenet5", not before) > 0
    assert jax.config.jax_threefry_partitionable == before


def test_ops_norm_quick_runs(capsys):
    pytest.importorskip("torch")
    from benchmarks import ops_norm

    ops_norm.main(["--quick", "--rounds", "3", "--reps", "5"])
    out = capsys.readouterr().out
    assert "BatchNorm train 8x8x16 N4" in out and "fwd+bwd" in out


@pytest.mark.slow
def test_train_step_versus_columns(capsys):
    """``--versus`` times ``ours`` a second time with other fast paths (about 25 s)."""
    pytest.importorskip("torch")
    train_step_cpu.main(["--quick", "--models", "lenet5", "--versus", "none"])
    out = capsys.readouterr().out
    assert "fast paths of `ours (versus)`: none (--versus none)" in out
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    assert header.rstrip(" |").endswith("ours (versus) ms | ours/ours (versus)")
    rows = [line for line in out.splitlines() if line.startswith("| lenet5")]
    assert len(rows) == 2 and all(len(r.split("|")) == len(header.split("|")) for r in rows)


def test_train_step_rejects_unknown_fast_paths(capsys):
    """A misspelt --versus or --fast-paths stops before anything is compiled."""
    for option in ("--versus", "--fast-paths"):
        with pytest.raises(SystemExit):
            train_step_cpu.main(["--quick", "--models", "lenet5", option, "depthwize"])
        err = capsys.readouterr().err
        assert f"{option} (='depthwize')" in err and "unknown fast paths ['depthwize']" in err


def test_train_step_help_lists_every_option(capsys):
    """``--help`` shows the benchmark's own options beside the common ones."""
    with pytest.raises(SystemExit) as stop:
        train_step_cpu.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for option in ("--versus", "--models", "--xla-flags", "--fast-paths", "--host-memory"):
        assert option in out


def test_train_step_sets_xla_flags_before_host_memory(monkeypatch):
    """``--host-memory`` imports cnn_jax (which appends its default XLA flags): the
    benchmark's ``--xla-flags`` and ``--xla-defaults`` must be in the environment first."""
    import os

    # setenv, not delenv: monkeypatch then undoes what main() writes to these variables.
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("CNN_JAX_XLA_DEFAULTS", "1")
    seen = {}

    def record(choice):
        seen.update(os.environ)
        raise SystemExit(0)  # stop before anything starts

    monkeypatch.setattr(common, "apply_host_memory", record)
    with pytest.raises(SystemExit):
        train_step_cpu.main(
            ["--host-memory", "calling_thread", "--xla-flags=--xla_foo=1", "--xla-defaults", "off"]
        )
    assert seen["XLA_FLAGS"] == "--xla_foo=1" and seen["CNN_JAX_XLA_DEFAULTS"] == "0"


def test_setup_xla_is_the_one_place_for_flags(monkeypatch):
    """``--xla-flags`` go first; ``--xla-defaults on`` calls cnn_jax's explicit function,
    ``off`` opts out for this process and its children."""
    from cnn_jax import xla_defaults

    monkeypatch.setenv("XLA_FLAGS", "--xla_a=1")
    monkeypatch.setenv("CNN_JAX_XLA_DEFAULTS", "1")
    calls = []
    monkeypatch.setattr(xla_defaults, "apply", lambda: calls.append(dict(os.environ)) or ())
    assert common.setup_xla("on", "--xla_b=2") == ()
    assert calls[0]["XLA_FLAGS"] == "--xla_a=1 --xla_b=2"
    assert common.setup_xla("off") == () and len(calls) == 1
    assert os.environ["CNN_JAX_XLA_DEFAULTS"] == "0"
    with pytest.raises(ValueError, match="`xla_defaults` \\(='maybe'\\)"):
        common.setup_xla("maybe")


@pytest.mark.parametrize(
    "module",
    [
        "benchmarks.ops_conv",
        "benchmarks.ops_pool",
        "benchmarks.ops_norm",
        "benchmarks.train_step_cpu",
        "benchmarks.mnist_time_to_99",
        "benchmarks.capsnet_routing",
        "benchmarks.imagenet_models_cpu",
        "benchmarks.compile_resnet50",
        "benchmarks.deep_compile_cpu",
        "benchmarks.init_compile_cpu",
        "benchmarks.resnet50_gpu",
        "benchmarks.airbench.run",
        "benchmarks.studies.profile_step_cpu",
        "benchmarks.studies.xla_flags_cpu",
        "benchmarks.launcher_speed",
        "benchmarks.reproduce",
        "benchmarks.winograd_cpu",
        "benchmarks.style_transfer_cpu",
        "benchmarks.bf16_cpu",
    ],
)
def test_every_tool_has_help(module, capsys):
    """Every tool's ``--help`` works; all take the harness's XLA options but those whose
    child processes set their own flags (launcher comparison, flags study, ledger reruns)."""
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out
    own_flags = ("launcher_speed", "studies.xla_flags_cpu", "reproduce")
    if module not in {f"benchmarks.{m}" for m in own_flags}:
        assert "--xla-defaults" in out and "--xla-flags" in out


def test_step_program_carries_its_state():
    import jax.numpy as jnp

    def step(state, x):
        return state + x, jnp.sum(state)

    program = common.compile_jax(step, (jnp.zeros(3), jnp.ones(3)), carries_state=True)
    assert float(program()) == 0.0
    assert float(program()) == 3.0
    assert program.args[0].tolist() == [2.0, 2.0, 2.0]
    assert program.total_s >= program.compile_s > 0


def test_launcher_speed_reads_the_training_windows(tmp_path):
    from benchmarks import launcher_speed

    rows = [
        {"step": 10, "split": "train", "loss": 1.0, "examples_per_second": 640.0},
        {"step": 20, "split": "test", "accuracy": 0.5},
        {"step": 20, "split": "train", "loss": 0.5, "examples_per_second": 1280.0},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert launcher_speed.window_times(path, batch_size=64) == [(10, 1.0), (10, 0.5)]
    assert launcher_speed.compile_seconds("summary: steps=20, compile_seconds=3.5, x=1") == 3.5
    assert launcher_speed.compile_seconds("no summary") is None
    path.write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(ValueError, match="no training windows"):
        launcher_speed.window_times(path, batch_size=64)


def test_winograd_quick_runs(capsys):
    from benchmarks import winograd_cpu

    winograd_cpu.main(["--quick", "--only", "conv2_1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| conv2_1 64x64 64->128")]
    assert len(rows) == 2, out  # forward, forward + input grad
    assert all(float(r.split("|")[-2]) < 1e-4 for r in rows)  # max deviation


def test_bf16_quick_runs(capsys):
    from benchmarks import bf16_cpu

    bf16_cpu.main(["--quick", "--only", "group1", "--batch", "8"])
    out = capsys.readouterr().out
    assert "airbench94's convolutions, batch 8" in out
    side_by_side = out.split("XLA:CPU against PyTorch")[1]
    assert side_by_side.count("| group1.conv2 |") == 1, out  # one layer: no sum row
    rows = [line for line in out.splitlines() if line.startswith("| group1.conv2 15x15 64->64")]
    assert len(rows) == 4, out  # conv and matmul, XLA:CPU and PyTorch
    devs = [float(r.split("|")[-2]) for r in rows if "grads" in r]
    assert len(devs) == 2 and all(1e-4 < d < 3e-2 for d in devs)  # bfloat16 rounding
    agree = float(out.split("PyTorch against XLA:CPU: largest deviation ")[1].split()[0])
    assert agree < 1e-4
    assert "CPU bfloat16 instructions:" in out


def test_bf16_framework_rows_sum_the_layers():
    from benchmarks.bf16_cpu import framework_rows
    from benchmarks.harness.timing import Timing

    def timing(*seconds):
        return Timing(inner=1, prewarm=False, rounds=[[s] * 5 for s in seconds])

    rows = framework_rows(
        [
            ("a", timing(0.3, 0.3, 0.3), timing(0.2, 0.2, 0.2)),
            ("b", timing(0.1, 0.2, 0.1), timing(0.1, 0.1, 0.1)),
        ]
    )
    assert rows[0] == ["a", "300", "200", "1.50 (1.50-1.50)"]
    assert rows[1][3] == "1.00 (1.00-2.00)"
    assert rows[2] == ["sum of 2 layers", "400", "300", "1.33"]  # medians 0.3 + 0.1, 0.2 + 0.1
    assert framework_rows([("a", timing(1, 1, 1), timing(2, 2, 2))])[-1][0] == "a"  # no sum


@pytest.mark.parametrize("batch", ["0", "-3"])
def test_bf16_batch_must_be_positive(batch, capsys):
    from benchmarks import bf16_cpu

    with pytest.raises(SystemExit):
        bf16_cpu.main(["--batch", batch])
    assert f"--batch (={batch}) must be positive" in capsys.readouterr().err


def test_bf16_jax_conv_program_keeps_the_forward_convolution():
    """Three convolutions, as PyTorch's forward and backward: none dropped as dead code."""
    import jax.numpy as jnp

    from benchmarks.bf16_cpu import _jax_fns

    conv, _ = _jax_fns(jnp.float32)
    x, k, g = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 5)), jnp.ones((2, 8, 8, 5))
    hlo = conv.lower(x, k, g).compile().as_text()
    assert hlo.count(" convolution(") == 3, hlo


def test_bf16_layers_are_airbench_nets_convolutions():
    import jax
    import jax.numpy as jnp

    from benchmarks.airbench.jax_net import AirbenchNet
    from benchmarks.bf16_cpu import airbench_layers

    shapes = jax.eval_shape(
        lambda: AirbenchNet().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    )["params"]
    for name, _, c_in, c_out in airbench_layers():
        group, conv = name.split(".")
        assert shapes[group][conv]["kernel"].shape == (3, 3, c_in, c_out), name
    sides = [side for _, side, _, _ in airbench_layers()]
    assert sides == [31, 15, 15, 7, 7, 3]  # 32 - 2 + 1 after whitening, halved by pools


@pytest.mark.slow
def test_winograd_whole_loss_quick_runs(capsys):
    """The Gatys loss both ways at 128x128 and the float64 check (compiles VGG-19: slow)."""
    from benchmarks import winograd_cpu

    winograd_cpu.main(["--quick", "--only", "loss"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| Gatys loss 128x128")]
    assert len(rows) == 1 and "gradient vs float64 at 128x128" in rows[0], out
