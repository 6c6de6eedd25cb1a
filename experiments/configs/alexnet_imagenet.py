r"""AlexNet on ImageNet (Krizhevsky, Sutskever & Hinton 2012), the paper's recipe.

Command (ImageNet in ``<data_dir>/imagenet2012``, see ``common.imagenet_config``):
  python -m experiments.main --config=experiments/configs/alexnet_imagenet.py \
      --workdir=runs/alexnet_imagenet

Variants (``config.py:variant[,variant]``):
  paper      the paper's network (96-256-384-384-256 maps, LRN, 11x11 stride 4)
             instead of torchvision's single-tower AlexNet (64-192-384-256-256).
  two_tower  with ``paper``: conv2, conv4 and conv5 grouped in two, as trained on two
             GPUs.
  runlocal   a few steps on 64x64 synthetic images (seconds on a CPU).

Recipe (section 5 of the paper): SGD with momentum 0.9, batch 128, weight decay 5e-4,
learning rate 0.01 divided by 10 three times when the validation error stopped
improving (here at epochs 30, 60 and 80), about 90 epochs; dropout 0.5 in the first
two fully connected layers; 224x224 crops and horizontal flips (the paper's fixed
256x256 rescale + random crops and PCA colour noise are replaced by the Inception
crop of ``imagenet_config``).

Expected: the paper reports 40.7% top-1 / 18.2% top-5 error for one network on the
ILSVRC-2012 validation set (its Table 2). Not run here: no ImageNet copy and no
accelerator time for 90 epochs in this project's sessions.
"""

from experiments.configs.common import imagenet_config, imagenet_runlocal, parse_variants


def get_config(arg: str | None = None):
    """Returns the config; ``arg`` selects variants (see the module docstring)."""
    variants = parse_variants(arg, ("paper", "two_tower", "runlocal"))
    c = imagenet_config("alexnet_paper" if "paper" in variants else "alexnet")
    if "two_tower" in variants:
        if "paper" not in variants:
            raise ValueError("variant 'two_tower' needs 'paper'")
        c.model_kwargs.two_tower = True
    c.batch_size = 128
    c.num_epochs = 90
    c.optim.name = "sgd"
    c.optim.learning_rate = 0.01
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "step"
    c.optim.milestones = (30, 60, 80)
    c.optim.decay_factor = 0.1
    if "runlocal" in variants:
        imagenet_runlocal(c, image_size=64)
    return c
