"""WideResNet as defined in the NAD code base (Li et al., ICLR 2021), whose checkpoints the MEDIC
authors released. Module names match those checkpoints (`block1.layer.0.bn1`, `convShortcut`, ...)
so their state dicts load unchanged. ReLUs are not in-place, so forward hooks on a BatchNorm see its
own output, not the ReLU's."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (
            None
            if self.equal_in_out
            else nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NAD's pre-activation wiring: with a width change, the shortcut sees relu(bn1(x)).
        activated = self.relu1(self.bn1(x))
        shortcut = x if self.convShortcut is None else self.convShortcut(activated)
        out = self.conv2(self.relu2(self.bn2(self.conv1(activated))))
        return shortcut + out


class NetworkBlock(nn.Module):
    def __init__(self, layers: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                for i in range(layers)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 16, widen_factor: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        blocks = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(blocks, channels[0], channels[1], 1)
        self.block2 = NetworkBlock(blocks, channels[1], channels[2], 2)
        self.block3 = NetworkBlock(blocks, channels[2], channels[3], 2)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(channels[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def wideresnet_shape(state_dict: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(depth, widen factor, classes) of a NAD WideResNet state dict."""
    pattern = re.compile(r"block1\.layer\.(\d+)\.")
    blocks = 1 + max(int(m.group(1)) for key in state_dict if (m := pattern.match(key)))
    width = state_dict["block1.layer.0.conv1.weight"].shape[0] // 16
    classes = state_dict["fc.weight"].shape[0]
    return 6 * blocks + 4, width, classes
