r"""ResNet v1 and v2 on ImageNet (He et al. 2016a, 2016b), the papers' recipe.

Command (ResNet-50 by default):
  python -m experiments.main --config=experiments/configs/resnet_imagenet.py:50 \
      --workdir=runs/resnet50_imagenet

Variants (``config.py:variant[,variant]``):
  18, 34, 50, 101, 152  the depth.
  v2                    pre-activation ResNet (50/101/152: Keras' ResNet*V2).
  zero_init             the last BN scale of each residual block starts at 0
                        (Goyal et al. 2017); v1 only.
  runlocal              a few steps on 32x32 synthetic images.

Recipe (section 3.4 of the v1 paper): SGD with momentum 0.9, batch 256, weight decay
1e-4, learning rate 0.1 divided by 10 at epochs 30 and 60 (the paper: "when the error
plateaus", 60e4 iterations), 90 epochs, BN, no dropout; scale augmentation replaced by
the Inception crop. The v2 paper trains the same way.

Expected: the v1 paper reports 22.85% / 6.71% top-1/top-5 error for ResNet-50 with
10-crop testing (its Table 3). Not run here (docs/RESULTS.md has the measured training
throughput instead).
"""

from experiments.configs.common import imagenet_config, imagenet_runlocal, parse_variants

_DEPTHS = ("18", "34", "50", "101", "152")


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, (*_DEPTHS, "v2", "zero_init", "runlocal"))
    depths = [d for d in _DEPTHS if d in variants] or ["50"]
    if len(depths) > 1:
        raise ValueError(f"choose one depth, got {depths}")
    depth = depths[0]
    if "v2" in variants:
        if depth not in ("50", "101", "152"):
            raise ValueError(f"v2 comes in depths 50, 101 and 152, not {depth}")
        if "zero_init" in variants:
            raise ValueError("zero_init is a v1 option")
        c = imagenet_config(f"resnet{depth}_v2")
    else:
        c = imagenet_config(f"resnet{depth}")
        if "zero_init" in variants:
            c.model_kwargs.zero_init_residual = True
    c.batch_size = 256
    c.num_epochs = 90
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.1
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "step"
    c.optim.milestones = (30, 60)
    if "runlocal" in variants:
        imagenet_runlocal(c, image_size=32)
    return c
