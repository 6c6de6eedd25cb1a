r"""GoogLeNet (Inception v1) on ImageNet (Szegedy et al. 2015), with its auxiliary heads.

Command:
  python -m experiments.main --config=experiments/configs/googlenet_imagenet.py \
      --workdir=runs/googlenet_imagenet

Variants: ``runlocal`` (a few steps on 64x64 synthetic images).

Recipe (section 6): SGD with momentum 0.9, the learning rate decreased by 4% every 8
epochs (here continuously: 0.96^(1/8) per epoch), the two auxiliary classifiers'
losses added with weight 0.3 during training and discarded at inference, dropout 0.7
in the auxiliary heads and 0.4 before the classifier, crops of 8-100% of the area with
aspect ratio 3/4-4/3 (the Inception crop of ``imagenet_config``). The paper trained
asynchronously on a CPU cluster and gives neither the batch nor the base rate; batch
256, rate 0.1, weight decay 1e-4 and 120 epochs here are common re-implementation
choices, not the paper's.

Expected: the paper reports 10.07% top-5 validation error for one model and one crop
(its Table 3; 6.67% for 7 models and 144 crops). Not run here.
"""

from experiments.configs.common import imagenet_config, imagenet_runlocal, parse_variants


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = imagenet_config("googlenet")
    c.model_kwargs.aux_logits = True
    c.aux_loss_weight = 0.3
    c.batch_size = 256
    c.num_epochs = 120
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.1
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "exponential"
    c.optim.decay_factor = 0.96 ** (1 / 8)
    if "runlocal" in variants:
        imagenet_runlocal(c, image_size=64)
    return c
