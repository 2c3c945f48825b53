"""The network of Jordan's airbench94 ("94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv
2404.00498, Sec. 3.1), built from the paper's description: a 2x2 stem convolution (no padding, 24
channels, so the maps are 31x31), then three groups of conv -> 2x2 max-pool -> BN -> GELU -> conv
-> BN -> GELU at widths 64, 256, 256, a 3x3 max-pool to one position and a bias-free linear layer
whose output is scaled by 1/9. 1.97M parameters at a fifth of a PreActResNet-18's multiply-adds
(118M against 555M per 32x32 image).

Only the network: the paper's training tricks (whitening initialisation of the stem, identity
initialisation, frozen BN scales, lookahead, test-time flips) are left out, as the repository's
`main0_baseline` ablation leaves them out (94% in 35 epochs there). The BN scales stay learnable
so that the defenses that act on them (ANP's masks, CLP, fine-pruning) apply as on other nets."""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (64, 256, 256)
STEM_WIDTH = 24
OUTPUT_SCALE = 1 / 9


def _group(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(out_channels),
        nn.GELU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.GELU(),
    )


class AirbenchNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, STEM_WIDTH, 2), nn.BatchNorm2d(STEM_WIDTH), nn.GELU()
        )
        # block1..block3: the names NAD's last-group rule looks for
        self.block1 = _group(STEM_WIDTH, WIDTHS[0])
        self.block2 = _group(WIDTHS[0], WIDTHS[1])
        self.block3 = _group(WIDTHS[1], WIDTHS[2])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.linear = nn.Linear(WIDTHS[-1], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.stem(x))))
        return self.linear(self.pool(out).flatten(1)) * OUTPUT_SCALE
