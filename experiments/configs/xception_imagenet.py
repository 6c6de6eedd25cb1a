r"""Xception on ImageNet (Chollet 2017), the paper's recipe.

Command:
  python -m experiments.main --config=experiments/configs/xception_imagenet.py \
      --workdir=runs/xception_imagenet

Variants: ``runlocal`` (a few steps on 80x80 synthetic images; the network needs >= 71).

Recipe (section 4.3): 299x299 inputs; SGD with momentum 0.9, learning rate 0.045
decayed by 0.94 every two epochs (here continuously), weight decay 1e-5, dropout 0.5
before the classifier, 60 replicas (batch 32 each here as a global 1,920), no
auxiliary tower; about 100 epochs (the paper trained for ~3 days; 100 epochs as for
Inception v3).

Expected: the paper reports 79.0% top-1 / 94.5% top-5 accuracy (single crop, its
Table 1). Not run here.
"""

from experiments.configs.common import imagenet_config, imagenet_runlocal, parse_variants


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = imagenet_config("xception", image_size=299)
    c.batch_size = 1920
    c.eval_batch_size = 200
    c.num_epochs = 100
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.045
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-5
    c.optim.schedule = "exponential"
    c.optim.decay_factor = 0.94**0.5
    if "runlocal" in variants:
        imagenet_runlocal(c, image_size=80)
    return c
