r"""Inception v3 on ImageNet (Szegedy et al. 2016), the paper's recipe.

Command:
  python -m experiments.main --config=experiments/configs/inception_v3_imagenet.py \
      --workdir=runs/inception_v3_imagenet

Variants: ``runlocal`` (a few steps on 80x80 synthetic images, without the auxiliary
head: the network takes inputs from 75x75, its auxiliary head needs 299x299).

Recipe (section 8): 299x299 inputs; RMSProp with decay 0.9 and epsilon 1.0, learning
rate 0.045 decayed by 0.94 every two epochs (here continuously, 0.94^(1/2) per
epoch), gradient clipping at norm 2.0, label smoothing 0.1 (section 7), batch 32 on
each of 50 replicas (1,600 here as one global batch), 100 epochs; the auxiliary head
(batch-normalized) as a regularizer, weight 0.4 as in torchvision's reference (the
paper gives none).

Expected: the paper reports 21.2% top-1 / 5.6% top-5 error (single crop, 299x299,
its Table 3). Not run here.
"""

from experiments.configs.common import imagenet_config, imagenet_runlocal, parse_variants


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("runlocal",))
    c = imagenet_config("inception_v3", image_size=299)
    c.model_kwargs.aux_logits = True
    c.aux_loss_weight = 0.4
    c.batch_size = 1600
    c.eval_batch_size = 200
    c.num_epochs = 100
    c.label_smoothing = 0.1
    c.optim.name = "rmsprop"
    c.optim.learning_rate = 0.045
    c.optim.decay = 0.9
    c.optim.eps = 1.0
    c.optim.momentum = 0.0
    c.optim.grad_clip_norm = 2.0
    c.optim.schedule = "exponential"
    c.optim.decay_factor = 0.94**0.5
    if "runlocal" in variants:
        imagenet_runlocal(c, image_size=80)
        c.model_kwargs.aux_logits = False
    return c
