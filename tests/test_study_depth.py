"""The depth studies of CIFAR-10 (plain/residual/highway/very deep/DenseNet/downsampling).

Each study config builds its paper form and CPU form with valid training configs, and
its ``runlocal`` form trains and writes the report (table, curves, JSON).
"""

from __future__ import annotations

import json

import pytest

from cnn_jax.study import cells, load_study, run_study, write_report
from cnn_jax.train.config import validate_config
from experiments.configs import resnet_cifar10

STUDIES = {
    "degradation": ("plain20", "plain56", "resnet20", "resnet56"),
    "highway": ("plain20", "resnet20", "highway22"),
    "very_deep": ("resnet110", "preact_resnet164", "preact_resnet1001"),
    "densenet": ("densenet_bc100", "resnet56", "resnet110"),
    "downsampling": ("strided conv (All-CNN-C)", "max pool (Model C)"),
}


def _spec(name: str, variant: str | None) -> str:
    path = f"experiments/configs/study_{name}.py"
    return f"{path}:{variant}" if variant else path


@pytest.mark.parametrize("name", sorted(STUDIES))
@pytest.mark.parametrize("variant", [None, "cpu"])
def test_study_configs_are_valid(name, variant):
    study = load_study(_spec(name, variant))
    grid = cells(study)
    labels = [c.labels[0] for c in grid]
    assert tuple(labels[: len(STUDIES[name])]) == STUDIES[name]
    for cell in grid:
        validate_config(cell.config)
        assert cell.config.dataset == "cifar10"
    if variant == "cpu" and name != "very_deep":
        assert {c.config.num_epochs for c in grid} == {resnet_cifar10.CPU_EPOCHS}


def test_highway_study_matches_parameter_budgets():
    import jax
    import jax.numpy as jnp

    from cnn_jax.models import get_model

    def count(config):
        model = get_model(config.model, num_classes=10, **dict(config.model_kwargs))
        shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
        return sum(x.size for x in jax.tree.leaves(shapes["params"]))

    grid = {c.labels[0]: c.config for c in cells(load_study(_spec("highway", None)))}
    for plain, resnet, highway in (
        ("plain20", "resnet20", "highway22"),
        ("plain56", "resnet56", "highway58"),
    ):
        assert count(grid[plain]) == count(grid[resnet])
        assert abs(count(grid[highway]) / count(grid[resnet]) - 1) < 0.02


def test_downsampling_rates_variant_crosses_the_nets_with_the_rates():
    from experiments.configs.study_downsampling import RATES

    plain = cells(load_study(_spec("downsampling", "cpu")))
    grid = cells(load_study(_spec("downsampling", "cpu,rates")))
    assert len(grid) == 2 * len(RATES) == 4
    got = {(c.config.model_kwargs.downsample, c.config.optim.learning_rate) for c in grid}
    assert got == {(d, r) for d in ("conv", "pool") for r in RATES}
    # Everything but the rate is the plain study's configuration.
    for cell in grid:
        (twin,) = [p for p in plain if p.labels[0] == cell.labels[0]]
        a, b = cell.config.to_dict(), twin.config.to_dict()
        a["optim"].pop("learning_rate"), b["optim"].pop("learning_rate")
        assert a == b
    with pytest.raises(ValueError, match="unknown config variant"):
        load_study(_spec("downsampling", "cpu,rate"))


def test_resnet_cifar10_config_needs_one_model():
    assert resnet_cifar10.get_config("cpu").model == "resnet20"
    with pytest.raises(ValueError, match="at most one model"):
        resnet_cifar10.get_config("resnet20,resnet56")
    with pytest.raises(ValueError, match="unknown config variant"):
        resnet_cifar10.get_config("resnet21")
    paper = resnet_cifar10.get_config("resnet56")
    assert (paper.num_epochs, paper.batch_size, paper.optim.milestones) == (164, 128, (82, 123))
    dense = resnet_cifar10.get_config("densenet_bc100")
    assert (dense.num_epochs, dense.batch_size, dense.optim.nesterov) == (300, 64, True)
    assert resnet_cifar10.get_config("resnet110").optim.warmup_epochs == 1.0


@pytest.mark.parametrize(
    "name",
    # The lecture's central figure in the default suite; the other four (each 20-60 s of
    # compilation on 2 cores) in the slow one.
    [
        "degradation",
        *(pytest.param(n, marks=pytest.mark.slow) for n in sorted(STUDIES) if n != "degradation"),
    ],
)
def test_study_runlocal_writes_report(name, tmp_path):
    study = load_study(_spec(name, "runlocal"))
    assert run_study(study, str(tmp_path))
    write_report(study, str(tmp_path))
    table = (tmp_path / "table.md").read_text()
    for label in STUDIES[name]:
        assert label in table
    assert (tmp_path / "curves.png").stat().st_size > 1000
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["cells"]) == len(STUDIES[name])


def test_densenet_warmup_variant_warms_only_the_resnets():
    from experiments.configs.study_densenet import RESNET_WARMUP_EPOCHS

    plain = {c.name: c.config.to_dict() for c in cells(load_study(_spec("densenet", "cpu")))}
    grid = cells(load_study(_spec("densenet", "cpu,warmup")))
    for cell in grid:
        validate_config(cell.config)
    warm = {c.name: c.config.to_dict() for c in grid}
    assert warm.keys() == plain.keys()
    for name, config in warm.items():
        want = 0.0 if config["model"] == "densenet_bc100" else RESNET_WARMUP_EPOCHS
        assert config["optim"]["warmup_epochs"] == want
        # Everything else is the one-recipe study's configuration (same cell names, so a
        # finished DenseNet cell can be shared).
        config["optim"].pop("warmup_epochs"), plain[name]["optim"].pop("warmup_epochs")
        assert config == plain[name]


def test_very_deep_cpu_variant_warms_up_for_its_warmup_steps():
    from cnn_jax.train.optim import make_schedule
    from experiments.configs.study_very_deep import CPU_STEPS, CPU_WARMUP_STEPS

    for cell in cells(load_study(_spec("very_deep", "cpu"))):
        c = cell.config
        assert c.num_train_steps == CPU_STEPS
        schedule = make_schedule(c.optim, 50_000 // c.batch_size, CPU_STEPS)
        lr = c.optim.learning_rate
        assert float(schedule(CPU_WARMUP_STEPS // 2)) == pytest.approx(lr / 2)
        assert float(schedule(CPU_WARMUP_STEPS)) == pytest.approx(lr)
        assert float(schedule(CPU_STEPS - 1)) == pytest.approx(lr)
