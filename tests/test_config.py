"""The training config: one list of keys (default_config), every shipped config and
variant validates against it, and every key can be set from the command line."""

import ast
import contextlib
import importlib
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from absl import flags
from ml_collections import ConfigDict, config_flags

from cnn_jax.data import resolve_data_dir
from cnn_jax.train import default_config, validate_config
from cnn_jax.train import optim as optim_lib
from cnn_jax.train.config import FREE_FORM, KNOWN_KEYS, OPTIM_KEYS
from experiments.configs import common

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.py"))
CONFIG_FILES = [
    n
    for n in CONFIG_FILES
    if "def get_config(" in (ROOT / "experiments" / "configs" / f"{n}.py").read_text()
]  # study files (get_study) are checked in tests/test_study*.py
#: Variants recorded with a batch that 8 devices cannot split (a 1-device CPU run).
ONE_DEVICE_VARIANTS = {("wavenet_fsdd", "cpu")}


def _variants(name):
    """The variants a config file knows, read from its unknown-variant error."""
    module = importlib.import_module(f"experiments.configs.{name}")
    with pytest.raises(ValueError, match="unknown config variant") as e:
        module.get_config("no_such_variant")
    return module, ast.literal_eval(re.search(r"known: (\[.*\])", str(e.value)).group(1))


def _parse(argv):
    """Parses launcher-style flags with the launcher's locked config flag."""
    values = flags.FlagValues()
    argv = ["prog", *argv]
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
    )
    with warnings.catch_warnings():  # ml_collections loads the file with load_module()
        warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
        values(argv)
    return values.config


def test_default_config_holds_every_key_the_loop_reads():
    c = default_config()
    assert set(c.keys()) == KNOWN_KEYS
    assert set(c.optim.keys()) == OPTIM_KEYS == optim_lib.OPTIM_KEYS
    # The keys the loop reads beyond the data pipeline's: all listed, with defaults.
    for key in ("init_from", "freeze", "aux_loss_weight", "label_smoothing", "keep_checkpoints"):
        assert key in c
    assert set(c.init_from.keys()) == {"source", "name", "path", "reinit"}
    assert c.init_from.name is None and c.freeze == () and c.aux_loss_weight == 0.0
    assert c.optim.reduce_on_plateau.metric is None
    assert FREE_FORM <= KNOWN_KEYS
    # experiments.configs.common re-exports the same defaults.
    assert common.base_config().to_dict() == c.to_dict()


def test_every_key_has_a_comment():
    """Each key of default_config is set on a line with a comment, or after a comment
    line (a block)."""
    source = (ROOT / "cnn_jax" / "train" / "config.py").read_text()
    body = source[source.index("def default_config") : source.index("#: Keys every config")]
    lines = body.splitlines()
    for key in [*KNOWN_KEYS, *OPTIM_KEYS, *default_config().optim.reduce_on_plateau.keys()]:
        where = [i for i, line in enumerate(lines) if re.match(rf"\s*(c\.)?{key}\s*=", line)]
        assert where, key
        assert any("#" in lines[i] or lines[i - 1].strip().startswith("#") for i in where), key


def test_unknown_keys_are_named():
    c = default_config()
    c.model, c.dataset, c.num_train_steps = "lenet5", "mnist", 4
    validate_config(c)
    for path, match in [
        ("lerning_rate", r"config has unknown keys \['lerning_rate'\]"),
        ("optim.lr", r"config.optim has unknown keys \['lr'\]"),
        ("optim.reduce_on_plateau.patince", r"config.optim.reduce_on_plateau has unknown keys"),
        ("init_from.nme", r"config.init_from has unknown keys \['nme'\]"),
    ]:
        bad = default_config()
        bad.model, bad.dataset, bad.num_train_steps = "lenet5", "mnist", 4
        *parents, last = path.split(".")
        node = bad
        for p in parents:
            node = node[p]
        node.unlock()
        node[last] = 1
        with pytest.raises(ValueError, match=match):
            validate_config(bad)
    # Free-form blocks take any key.
    c.model_kwargs = ConfigDict({"anything": 1})
    validate_config(c)
    c.init_from = None  # a config may drop the block
    validate_config(c)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_shipped_config_and_variant_validates(name):
    module, known = _variants(name)
    validate_config(module.get_config())
    for variant in known:
        try:
            c = module.get_config(variant)
        except ValueError:  # a variant that needs a companion (e.g. two_tower needs paper)
            companions = []
            for other in known:
                with contextlib.suppress(ValueError):
                    companions.append(module.get_config(f"{other},{variant}"))
            assert companions, f"{name}:{variant} is not valid with any other variant"
            c = companions[0]
        if (name, variant) in ONE_DEVICE_VARIANTS:
            c.batch_size = 8  # validated as it would run on the tests' 8 devices
        validate_config(c)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_init_from_freeze_and_plateau_from_the_command_line(name, tmp_path):
    """With the launcher's locked config, the transfer keys are settable for any config."""
    c = _parse(
        [
            f"--config={ROOT / 'experiments' / 'configs' / name}.py",
            "--config.init_from.name=resnet18",
            f"--config.init_from.path={tmp_path / 'w.pth'}",
            "--config.init_from.reinit=('/fc/',)",
            "--config.freeze=('^conv1/',)",
            "--config.aux_loss_weight=0.3",
            "--config.optim.reduce_on_plateau.metric=test_accuracy",
            "--config.optim.reduce_on_plateau.patience=2",
        ]
    )
    assert c.init_from.name == "resnet18" and c.init_from.path == str(tmp_path / "w.pth")
    assert tuple(c.init_from.reinit) == ("/fc/",) and tuple(c.freeze) == ("^conv1/",)
    assert c.aux_loss_weight == 0.3
    assert c.optim.reduce_on_plateau.metric == "test_accuracy"
    assert c.optim.reduce_on_plateau.patience == 2
    validate_config(c)
    with pytest.raises(AttributeError):  # still locked: a typo is an error
        _parse([f"--config={ROOT / 'experiments' / 'configs' / name}.py", "--config.init_fro=1"])


@pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)
def test_launcher_passes_init_from_to_the_loop(tmp_path):
    """`--config.init_from...` on LeNet-5's config (which sets no init_from) reaches the
    loop: the run stops at start on the missing weights file, naming it."""
    missing = tmp_path / "missing.pth"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.main",
            "--config=experiments/configs/lenet5_mnist.py:runlocal",
            f"--workdir={tmp_path / 'run'}",
            "--config.init_from.name=resnet18",
            f"--config.init_from.path={missing}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode != 0
    assert f"`config.init_from.path` (='{missing}') is not a file" in out.stderr, out.stderr


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("seed", 2**70, r"`config.seed` \(=1180591620717411303424\) must be in \[0, 2\*\*32\)"),
        ("seed", -1, r"`config.seed` \(=-1\) must be in \[0, 2\*\*32\)"),
        ("label_smoothing", 1.0, r"`config.label_smoothing` \(=1.0\) must be in \[0, 1\)"),
        ("label_smoothing", -0.1, r"`config.label_smoothing` \(=-0.1\) must be in \[0, 1\)"),
        ("optim.momentum", -0.5, r"`config.optim.momentum` \(=-0.5\) must be in \[0, 1\)"),
        ("optim.b2", 1.0, r"`config.optim.b2` \(=1.0\) must be in \[0, 1\)"),
        ("optim.eps", -1e-8, r"`config.optim.eps` \(=-1e-08\) must be >= 0"),
        ("optim.decay", float("nan"), r"`config.optim.decay` \(=nan\) must be in \[0, 1\)"),
        ("optim.warmup_epochs", -1.0, r"`config.optim.warmup_epochs` \(=-1.0\) must be >= 0"),
        ("optim.decay_factor", -0.5, r"`config.optim.decay_factor` \(=-0.5\) must be >= 0"),
        ("aux_loss_weight", float("inf"), r"`config.aux_loss_weight` \(=inf\) must be >= 0"),
        ("pad_to", 0, r"`config.pad_to` \(=0\) must be >= 1"),
        ("optim.weight_decay", -1e-4, r"`optim.weight_decay` \(=-0.0001\) must be non-negative"),
    ],
)
def test_numbers_out_of_range_are_named_with_their_range(key, value, match):
    from experiments.configs import lenet5_mnist

    c = lenet5_mnist.get_config("runlocal")
    node = c
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    node.unlock()
    node[last] = value
    with pytest.raises(ValueError, match=match):
        validate_config(c)
        optim_lib.make_optimizer(c.optim, 10, 10)


def test_every_range_names_a_key_of_the_defaults():
    from cnn_jax.train.config import RANGES
    from cnn_jax.train.config_record import flatten

    keys = set(flatten(default_config()))
    assert {key for key, *_ in RANGES} <= keys


def _launch(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def test_unknown_override_names_the_key_and_the_keys_nearby(tmp_path):
    config = "--config=experiments/configs/lenet5_mnist.py:runlocal"
    out = _launch(config, f"--workdir={tmp_path}", "--config.optim.momentun=1")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr, out.stderr
    assert "--config.optim.momentun: the config has no key 'optim.momentun'" in out.stderr
    assert "did you mean optim.momentum" in out.stderr and "optim.nesterov" in out.stderr


def test_a_run_length_on_the_command_line_replaces_the_config_files_other():
    """LeNet-5's config sets epochs; ``--config.num_train_steps`` means steps instead."""
    from experiments.configs import lenet5_mnist
    from experiments.main import run_length_from_command_line

    c = lenet5_mnist.get_config()
    c.lock()
    assert c.num_epochs is not None and c.num_train_steps is None
    run_length_from_command_line(c, ["main", "--config.num_train_steps=7"])
    assert (c.num_epochs, c.num_train_steps) == (None, None)  # set by the flag parser
    c.num_train_steps = 7
    validate_config(c)
    c = lenet5_mnist.get_config("runlocal")  # sets steps
    run_length_from_command_line(c, ["main", "--config.num_epochs", "2"])
    assert c.num_train_steps is None
    both = lenet5_mnist.get_config()
    run_length_from_command_line(
        both, ["main", "--config.num_epochs=1", "--config.num_train_steps=3"]
    )
    assert both.num_epochs is not None  # both given: left to validate_config's error


@pytest.mark.slow
def test_launcher_runs_steps_on_an_epochs_config(tmp_path):
    out = _launch(
        "--config=experiments/configs/lenet5_mnist.py",
        f"--workdir={tmp_path}",
        "--config.num_train_steps=2",
        "--config.eval_every_steps=2",
        "--config.progress_bar=False",
        "--config.eval_batch_size=1000",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "steps=2" in out.stderr, out.stderr[-3000:]
