"""The staircase hinge, and recovery of a planted patch trigger on a hand-built victim."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor.plugin_types import RunContext
from purify_backdoor.unlearn.recovery import (
    RecoverySettings,
    recover_triggers,
    staircase_hinge,
    trigger_success,
)


def test_hinge_stops_pushing_past_beta():
    probabilities = torch.tensor([0.2, 0.9, 0.5])
    assert torch.isclose(staircase_hinge(probabilities, 0.5), torch.tensor(0.1))
    assert staircase_hinge(torch.tensor([0.6, 0.99]), 0.5) == 0
    assert staircase_hinge(probabilities, 0.8) > staircase_hinge(probabilities, 0.5)


class PatchVictim(nn.Module):
    """Class = argmax of a fixed random linear map, unless a near-white 3x3 patch is anywhere in
    the image: then class 5 wins (a backdoor whose trigger is known)."""

    def __init__(self, strength: float = 40.0) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 16 * 16, 10)
        self.linear.weight.data *= 10
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        whiteness = F.avg_pool2d(x.mean(1, keepdim=True), 3, stride=1).flatten(1).amax(1)
        boost = self.strength * torch.sigmoid(10 * (whiteness - 0.8))
        return self.linear(x.flatten(1)) + boost[:, None] * F.one_hot(torch.tensor(5), 10)


def test_scan_finds_the_planted_target_and_only_it():
    torch.manual_seed(0)
    victim = PatchVictim().eval()
    images = torch.rand(256, 3, 16, 16) * 0.6
    held_out = (torch.rand(128, 3, 16, 16) * 0.6, torch.randint(0, 10, (128,)))
    settings = RecoverySettings(hidden=64, steps=120, batch_size=64, staircase=(0.5, 0.8), tau=0.8)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    pool, success = recover_triggers(victim, images, held_out, [2, 5], settings, context)
    assert sorted(pool) == [5] and len(pool[5]) == 2
    assert success["5"]["beta=0.5"] >= 0.8 > success["2"]["beta=0.5"]
    assert trigger_success(victim, pool[5][1], *held_out, 5, settings, context) >= 0.8
    assert all(parameter.requires_grad for parameter in victim.parameters())
