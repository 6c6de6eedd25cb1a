r"""Saves a torchvision model's freshly initialised weights, a stand-in for pretrained ones.

Pretrained files cannot be downloaded where this project is tested, so the transfer
learning study starts from weights made by torchvision's own initialiser and saved the
way torchvision saves its checkpoints; a real ``resnet18-f37072fd.pth`` (or any
torchvision checkpoint) is used the same way.

  python -m experiments.make_init_weights --model=resnet18 \
      --out=weights/resnet18_torchvision_init.pth

Needs ``torch`` and ``torchvision`` (``pip install -e ".[torch]"``).
"""

from __future__ import annotations

import os
import sys
import types

from absl import app, flags

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defines the flags (when run as a script, so that importing defines none)."""
    flags.DEFINE_string("model", "resnet18", "a torchvision.models constructor name")
    flags.DEFINE_string("out", None, "the .pth or .safetensors file to write", required=True)
    flags.DEFINE_integer("seed", 0, "torch.manual_seed before the model is built")


def make(model: str, out: str, seed: int = 0) -> None:
    """Builds ``torchvision.models.<model>()`` with seed ``seed`` and saves its state dict.

    Args:
      model: the constructor name, e.g. ``"resnet18"``.
      out: the file (``.pth`` via ``torch.save``, ``.safetensors`` via safetensors).
      seed: the initialisation seed.

    Raises:
      ValueError: for a name torchvision does not have.
    """
    import torch

    # torchvision's C++ ops are not needed (and the PyPI wheel's do not load beside a
    # CPU-only torch); only its pure-Python model definitions are used.
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import torchvision

    if not hasattr(torchvision.models, model):
        raise ValueError(f"`model` (={model!r}) is not a torchvision.models constructor")
    torch.manual_seed(seed)
    net = getattr(torchvision.models, model)(weights=None)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    from cnn_jax.weights import save_state_dict

    save_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, out)


def main(argv: list[str]) -> None:
    """Entry point."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    make(FLAGS.model, FLAGS.out, FLAGS.seed)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
