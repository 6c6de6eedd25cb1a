r"""Fine-tuning an ImageNet ResNet-18 on CIFAR-10 from torchvision weights.

Commands (the weights: any torchvision resnet18 checkpoint; offline, one made by
torchvision's own initialiser):
  python -m experiments.make_init_weights --model=resnet18 \
      --out=weights/resnet18_torchvision_init.pth
  python -m experiments.main --config=experiments/configs/resnet18_cifar10_finetune.py \
      --workdir=runs/resnet18_cifar10_finetune

Variants (``config.py:variant[,variant]``):
  linear    train only the new classifier (every other layer and BN frozen).
  runlocal  a few steps on small batches.

Recipe: ``cnn_jax.models.ResNet18`` (torchvision's layout) loaded with
``config.init_from`` (the ``fc`` layer initialised afresh for 10 classes); the stem
and the first stage (``conv1``, ``bn1``, ``layer1``) frozen through
``optax.multi_transform`` with their batch normalization in inference mode
(``config.freeze``); SGD with momentum 0.9, learning rate 0.01 with a cosine decay,
weight decay 5e-4, batch 128, 10 epochs, random crops (padding 4) and flips, 32x32
inputs (the ImageNet network ends on a 1x1 map). With real pretrained weights this is
the classic transfer set-up; from torchvision's initialiser it is a check that the
loading, freezing and training machinery works end to end
(``tests/test_configs_imagenet.py::test_finetune_from_torchvision_weights``).

Result, from torchvision's initialiser and with one epoch instead of ten
(``--config.num_epochs=1``; the ten take hours on a 2-core CPU and have not been run):
50.35% test accuracy (test loss 1.3834), entry ``resnet18_cifar10_finetune_1epoch`` of the
results ledger (docs/results/ledger.json, with its command, hardware, date, code revision
and wall time; the table in docs/RESULTS.md, "Accuracy").
"""

from ml_collections import ConfigDict

from experiments.configs.common import base_config, parse_variants, runlocal


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("linear", "runlocal"))
    c = base_config()
    c.model = "resnet18"
    c.dataset = "cifar10"
    c.normalization = "standardize"
    c.init_from = ConfigDict(
        {
            "source": "torchvision",
            "name": "resnet18",
            "path": "weights/resnet18_torchvision_init.pth",
            "reinit": ("/fc/",),
        }
    )
    c.freeze = ("^conv1/", "^bn1/", "^layer1_")
    if "linear" in variants:
        c.freeze = ("^(?!fc/)",)  # everything but the classifier
    c.batch_size = 128
    c.num_epochs = 10
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.01
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "cosine"
    c.augment = (("random_crop", {"padding": 4}), "horizontal_flip")
    if "runlocal" in variants:
        runlocal(c, steps=6)
        c.batch_size = 16
        c.progress_bar = False
    return c
