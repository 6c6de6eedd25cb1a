r"""DenseNet on ImageNet (Huang et al. 2017), the paper's recipe.

Command (DenseNet-121 by default):
  python -m experiments.main --config=experiments/configs/densenet_imagenet.py:121 \
      --workdir=runs/densenet121_imagenet

Variants (``config.py:variant[,variant]``):
  121, 169, 201, 161  the depth (161: growth rate 48).
  runlocal            a few steps on 32x32 synthetic images.

Recipe (section 4.2): SGD with Nesterov momentum 0.9 without dampening, batch 256,
weight decay 1e-4, learning rate 0.1 divided by 10 at epochs 30 and 60, 90 epochs.

Expected: the paper reports 25.02% / 7.71% top-1/top-5 error for DenseNet-121
(single crop, its Table 3). Not run here.
"""

from experiments.configs.common import imagenet_config, imagenet_runlocal, parse_variants

_DEPTHS = ("121", "169", "201", "161")


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, (*_DEPTHS, "runlocal"))
    depths = [d for d in _DEPTHS if d in variants] or ["121"]
    if len(depths) > 1:
        raise ValueError(f"choose one depth, got {depths}")
    c = imagenet_config(f"densenet{depths[0]}")
    c.batch_size = 256
    c.num_epochs = 90
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.1
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "step"
    c.optim.milestones = (30, 60)
    if "runlocal" in variants:
        imagenet_runlocal(c, image_size=32)
    return c
