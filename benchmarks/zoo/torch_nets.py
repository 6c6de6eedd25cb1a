"""The small CNNs of the training-step benchmarks in PyTorch (NCHW), as in ``flax_nets``.

Imported only where PyTorch is installed (``benchmarks.zoo.torch_models()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet5Modern in PyTorch."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c3 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.f5, self.f6, self.out = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x: Any) -> Any:
        """Logits of ``x`` (NCHW)."""
        x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.c3(x)), 2)
        x = torch.flatten(x, 1)
        return self.out(torch.relu(self.f6(torch.relu(self.f5(x)))))


def bn(c: int) -> nn.Module:
    return nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)


class Airbench(nn.Module):
    """airbench94's network in PyTorch (BatchNorm eps 1e-12, momentum 0.4)."""

    def __init__(self, widths: Sequence[int] = (64, 256, 256)) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, 24, 2), nn.GELU()]
        c = 24
        for w in widths:
            mods += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.MaxPool2d(2), bn(w)]
            mods += [nn.GELU(), nn.Conv2d(w, w, 3, padding=1, bias=False), bn(w), nn.GELU()]
            c = w
        mods += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(c, 10, bias=False)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: Any) -> Any:
        """Logits of ``x`` (NCHW)."""
        return self.net(x) / 9.0


class BasicBlock(nn.Module):
    """ResNet-20's basic block, option-A (zero-padded) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: Any) -> Any:
        """Logits of ``x`` (NCHW)."""
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.stride != 1 or self.extra:
            x = x[:, :, :: self.stride, :: self.stride]
            e = self.extra
            x = nn.functional.pad(x, (0, 0, 0, 0, e // 2, e - e // 2))
        return torch.relu(y + x)


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al. 2015)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        blocks, c = [], 16
        for i, w in enumerate((16, 32, 64)):
            for j in range(3):
                blocks.append(BasicBlock(c, w, 2 if i > 0 and j == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: Any) -> Any:
        """Logits of ``x`` (NCHW)."""
        x = self.blocks(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class XceptionBlock(nn.Module):
    """An Xception middle-flow block, global pooling, linear 10."""

    def __init__(self, c: int = 728) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for _ in range(3):
            self.convs.append(
                nn.Sequential(
                    nn.ReLU(),
                    nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                    nn.Conv2d(c, c, 1, bias=False),
                    nn.BatchNorm2d(c),
                )
            )
        self.fc = nn.Linear(c, 10)

    def forward(self, x: Any) -> Any:
        """Logits of ``x`` (NCHW)."""
        h = x
        for m in self.convs:
            h = m(h)
        return self.fc((h + x).mean(dim=(2, 3)))


class UNetDecoder(nn.Module):
    """A U-Net-like decoder, per-pixel logits."""

    def __init__(self, c_in: int = 256, widths: Sequence[int] = (128, 64, 32)) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c = c_in
        for w in widths:
            mods += [nn.ConvTranspose2d(c, w, 2, stride=2)]
            mods += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        mods += [nn.Conv2d(c, 10, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: Any) -> Any:
        """Logits of ``x`` (NCHW)."""
        return self.net(x)


def constructors() -> dict[str, Callable[[], nn.Module]]:
    """``name -> constructor`` of the PyTorch modules."""
    return {
        "lenet5": LeNet5,
        "airbench94": Airbench,
        "resnet20": ResNet20,
        "xception_block": XceptionBlock,
        "unet_decoder": UNetDecoder,
    }
