r"""VGG on ImageNet (Simonyan & Zisserman 2015), the paper's recipe.

Command (VGG-16 by default):
  python -m experiments.main --config=experiments/configs/vgg_imagenet.py:16 \
      --workdir=runs/vgg16_imagenet

Variants (``config.py:variant[,variant]``):
  11, 13, 16, 19  the depth (configurations A, B, D, E of the paper's Table 1).
  bn              with batch normalization after every convolution (torchvision's
                  ``vgg*_bn``; not in the paper).
  runlocal        a few steps on 32x32 synthetic images.

Recipe (section 3.1): SGD with momentum 0.9, batch 256, weight decay 5e-4, dropout 0.5
in the first two fully connected layers, learning rate 1e-2 divided by 10 when the
validation accuracy stopped improving (three times; here at epochs 30, 50 and 65), 74
epochs. The paper's scale jittering (the shorter side drawn from [256, 512]) is
replaced by the Inception crop; with batch normalization the 1e-2 start needs no
shallow-net initialisation.

Expected: the paper reports 25.6% / 8.1% top-1/top-5 validation error for VGG-16
(configuration D) with single-scale evaluation (its Table 3; 24.8% / 7.5% with
multi-scale evaluation, Table 4). Not run here.
"""

from experiments.configs.common import imagenet_config, imagenet_runlocal, parse_variants

_DEPTHS = ("11", "13", "16", "19")


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, (*_DEPTHS, "bn", "runlocal"))
    depths = [d for d in _DEPTHS if d in variants] or ["16"]
    if len(depths) > 1:
        raise ValueError(f"choose one depth, got {depths}")
    c = imagenet_config(f"vgg{depths[0]}" + ("_bn" if "bn" in variants else ""))
    c.batch_size = 256
    c.num_epochs = 74
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.01
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "step"
    c.optim.milestones = (30, 50, 65)
    if "runlocal" in variants:
        imagenet_runlocal(c, image_size=32)
    return c
