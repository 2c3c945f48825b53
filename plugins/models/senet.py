"""SENet-18 (Hu et al., 2018) as BackdoorBench's `models/senet.py` builds it (`senet18`): the
CIFAR ResNet's stem, stages and head with pre-activation blocks that carry a squeeze-and-excitation
gate (`fc1`, `fc2`: 1x1 convolutions, reduction 16), applied before the shortcut is added."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor.models.cifar_resnet import CifarResNet
from purify_backdoor.models.preact_resnet import PreActBlock

REDUCTION = 16


class SEPreActBlock(PreActBlock):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__(in_planes, planes, stride)
        self.fc1 = nn.Conv2d(planes, planes // REDUCTION, 1)
        self.fc2 = nn.Conv2d(planes // REDUCTION, planes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(out, 1)))))
        return out * gate + shortcut


def senet18(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(num_classes=num_classes, block=SEPreActBlock, counts=(2, 2, 2, 2))
