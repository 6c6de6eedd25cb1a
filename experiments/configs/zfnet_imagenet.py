r"""ZFNet on ImageNet (Zeiler & Fergus 2014), the paper's recipe.

Command:
  python -m experiments.main --config=experiments/configs/zfnet_imagenet.py \
      --workdir=runs/zfnet_imagenet

Variants: ``runlocal`` (a few steps on 64x64 synthetic images).

Recipe (section 3 of the paper): SGD with momentum 0.9, mini-batches of 128, learning
rate 1e-2 "annealed manually" (here divided by 10 at epochs 30 and 55), 70 epochs,
dropout 0.5 in the fully connected layers; 224x224 crops and flips. The paper does not
give a weight decay; AlexNet's 5e-4 is used.

Expected: the paper's Table 2 reports 38.4% top-1 / 16.5% top-5 validation error for
one convnet with the modified layers. Not run here (no ImageNet, no accelerator time
for 70 epochs).
"""

from experiments.configs.common import imagenet_config, imagenet_runlocal, parse_variants


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = imagenet_config("zfnet")
    c.batch_size = 128
    c.num_epochs = 70
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.01
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "step"
    c.optim.milestones = (30, 55)
    if "runlocal" in variants:
        imagenet_runlocal(c, image_size=64)
    return c
