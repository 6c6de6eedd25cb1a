"""``python -m experiments.style_transfer`` on two real images.

The images are two CIFAR-10 test JPEGs from ``../shared/data`` upscaled from 32x32 to
64x64; the weights are a VGG-19 with torchvision's initialization (no ImageNet weights
offline), built in PyTorch with torchvision's layer indices and saved as a ``.pth`` by
the test. Shallow layers and a few steps keep the run short.
"""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from experiments import style_transfer
from tests import torch_oracle

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10_jpeg"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch = torch_oracle.torch()
    from PIL import Image

    from benchmarks.style_transfer_cpu import torch_state_dict, torch_vgg19_features

    archive = DATA / "cifar10_jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is not available")
    root = tmp_path_factory.mktemp("style_cli")
    out = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            parts = Path(member.name).parts
            if "test" in parts and parts[-2] in ("cat", "ship") and parts[-2] not in out:
                data = tar.extractfile(member).read()
                im = Image.open(io.BytesIO(data)).convert("RGB").resize((64, 64), Image.BICUBIC)
                out[parts[-2]] = root / f"{parts[-2]}.jpg"
                im.save(out[parts[-2]], quality=95)
            if len(out) == 2:
                break
    net = torch_vgg19_features(torch, seed=0)
    weights = root / "vgg19_torchvision_init.pth"
    torch.save({k: torch.from_numpy(v) for k, v in torch_state_dict(net).items()}, weights)
    return {"content": out["cat"], "style": out["ship"], "weights": weights, "root": root}


def _argv(files, output, *extra):
    return [
        f"--content={files['content']}",
        f"--style={files['style']}",
        f"--output={output}",
        f"--weights={files['weights']}",
        "--content_layers=relu2_1",
        "--style_layers=relu1_1,relu2_1",
        "--progress=off",
        *extra,
    ]


def test_cli_writes_an_image_and_intermediates(files, capsys):
    from cnn_jax import style

    out = files["root"] / "out.png"
    style_transfer.main(_argv(files, out, "--steps=4", "--size=48", "--save_every=2"))
    image = style.load_image(out)
    assert image.shape == (48, 48, 3) and image.std() > 0.01
    assert (files["root"] / "out_step2.png").is_file()
    assert (files["root"] / "out_step4.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_cli_colour_preservation_and_coarse_to_fine(files):
    from cnn_jax import style

    out = files["root"] / "colour.png"
    style_transfer.main(_argv(files, out, "--steps=2", "--scales=24,48", "--preserve_colour"))
    assert style.load_image(out).shape == (48, 48, 3)


def test_cli_clear_errors(files, tmp_path, capsys):
    bad_image = tmp_path / "broken.jpg"
    bad_image.write_bytes(b"\xff\xd8\xff not really a jpeg")
    argv = _argv(files, tmp_path / "o.png", "--steps=1", "--size=32")
    with pytest.raises(SystemExit) as e:
        style_transfer.main([f"--content={bad_image}", *argv[1:]])
    assert e.value.code == 2 and "broken.jpg" in capsys.readouterr().err

    wrong = tmp_path / "resnet.safetensors"
    from cnn_jax import weights

    weights.save_state_dict({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}, wrong)
    with pytest.raises(SystemExit):
        style_transfer.main([*argv[:3], f"--weights={wrong}", *argv[4:]])
    assert "not torchvision's vgg19" in capsys.readouterr().err

    deep = [a for a in argv if "layers" not in a] + ["--size=8"]
    with pytest.raises(SystemExit):
        style_transfer.main(deep)
    assert "too small for the layers" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_runs_and_both_frameworks_lower_the_loss(tmp_path):
    """``benchmarks.style_transfer_cpu`` at 16x16, 3 iterations (slow: compiles VGG-19)."""
    import json

    from benchmarks import style_transfer_cpu

    torch_oracle.torch()
    out = tmp_path / "r.json"
    style_transfer_cpu.main(["--size=16", "--iters=3", f"--json={out}"])
    result = json.loads(out.read_text())
    assert result["size"] == 16 and result["ratio_cnn_jax_over_pytorch"] > 0
    assert all(np.isfinite(v) for v in result["final_loss"].values())
