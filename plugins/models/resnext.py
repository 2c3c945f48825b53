"""ResNeXt-29 (2x64d) for CIFAR (Xie et al., 2017), with the module names of BackdoorBench's
`models/resnext.py` (`resnext29`): a 1x1 stem, three stages of three bottleneck blocks whose
group width doubles per stage, and `linear`. Built at 32 x 32 input, as there."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResNeXtBlock(nn.Module):
    def __init__(self, in_planes: int, cardinality: int, width: int, stride: int) -> None:
        super().__init__()
        group_width = cardinality * width
        self.conv1 = nn.Conv2d(in_planes, group_width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(group_width)
        self.conv2 = nn.Conv2d(
            group_width, group_width, 3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn2 = nn.BatchNorm2d(group_width)
        self.conv3 = nn.Conv2d(group_width, 2 * group_width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * group_width)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != 2 * group_width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, 2 * group_width, 1, stride=stride, bias=False),
                nn.BatchNorm2d(2 * group_width),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        return F.relu(out + self.shortcut(x))


class ResNeXt29(nn.Module):
    def __init__(self, num_classes: int = 10, cardinality: int = 2, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes, stages = 64, []
        for stage in range(3):
            blocks = []
            for index in range(3):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(ResNeXtBlock(in_planes, cardinality, width, stride))
                in_planes = 2 * cardinality * width
            stages.append(nn.Sequential(*blocks))
            width *= 2
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))
