"""``python -m experiments.visualize`` on a runlocal LeNet-5 (modern) workdir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_jax.data import resolve_data_dir
from cnn_jax.train import train_and_evaluate
from experiments.configs import lenet5_mnist

ROOT = Path(__file__).resolve().parents[1]
needs_mnist = pytest.mark.skipif(
    not (resolve_data_dir()[0] / "mnist" / "train-images-idx3-ubyte.gz").exists(),
    reason="MNIST not found in the data directory (../shared/data or $CNN_JAX_DATA_DIR)",
)
PNG = b"\x89PNG\r\n\x1a\n"


@needs_mnist
def test_visualize_cli_writes_every_figure(tmp_path):
    pytest.importorskip("matplotlib")
    workdir = tmp_path / "run"
    train_and_evaluate(lenet5_mnist.get_config("modern,runlocal"), str(workdir))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "experiments.visualize", f"--workdir={workdir}"]
    cmd += ["--num_eval=64", "--num_images=2", f"--output_dir={tmp_path / 'figs'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = {Path(line).name for line in proc.stdout.split()}
    want = {"curves.png", "filters_first.png", "filters_second.png", "confusion.png"}
    want |= {"feature_maps_c1.png", "feature_maps_c3.png", "saliency.png", "occlusion.png"}
    want |= {"deconvnet.png"}
    assert want <= written, written
    for name in written:
        assert (tmp_path / "figs" / name).read_bytes()[:8] == PNG
    bad = subprocess.run(
        [sys.executable, "-m", "experiments.visualize", f"--workdir={tmp_path / 'none'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode != 0 and "has no config.json" in bad.stderr


def test_filters_of_a_model_without_a_deconvnet_stack():
    """LeNet-5 (tanh, trainable subsampling): the first 4-D kernel on the image channels."""
    import jax
    import jax.numpy as jnp

    from cnn_jax.models import LeNet5
    from experiments.visualize import _conv_kernels

    model = LeNet5()
    v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
    assert [k.shape for k in _conv_kernels(model, v, 1)] == [(5, 5, 1, 6), (5, 5, 16, 120)]


def test_importing_viz_does_not_import_matplotlib():
    code = "import sys, cnn_jax.viz; assert 'matplotlib' not in sys.modules"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=300)
