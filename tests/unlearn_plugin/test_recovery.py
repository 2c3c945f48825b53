"""The staircase hinge, the pool rule, and recovery of planted triggers (a patch anywhere, a
full-image additive pattern, a patch in one corner) on hand-built victims."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor.plugin_types import RunContext
from purify_backdoor.unlearn import recovery
from purify_backdoor.unlearn.generator import TriggerGenerator
from purify_backdoor.unlearn.recovery import (
    PoolRule,
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
    settings = RecoverySettings(
        trigger="patch", hidden=64, steps=120, batch_size=64, staircase=(0.5, 0.8), tau=0.8
    )
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    pool, scan, _ = recover_triggers(victim, images, held_out, [2, 5], settings, context)
    assert sorted(pool) == [5] and len(pool[5]) == 2 and scan["kept_labels"] == [5]
    success = {label: row["success"]["patch"] for label, row in scan["labels"].items()}
    assert success["5"]["beta=0.5"] >= 0.8 > success["2"]["beta=0.5"]
    assert trigger_success(victim, pool[5][1], *held_out, 5, settings, context) >= 0.8
    assert all(parameter.requires_grad for parameter in victim.parameters())


def test_a_planted_outlier_is_kept_and_a_flat_profile_keeps_none():
    # the clean-label model: the target at 51%, every other label at 0.4-4.6%
    success = [0.004, 0.02, 0.046, 0.01, 0.03, 0.51, 0.015, 0.02, 0.008, 0.025]
    rule = PoolRule.from_success(success, tau=0.8, anomaly=2.0)
    assert [k for k, rate in enumerate(success) if rule.passes(rate)] == [5]
    assert rule.index(0.51) > 10 and rule.index(0.046) < 2
    flat = [0.02, 0.03, 0.01, 0.02, 0.04, 0.02, 0.03, 0.01, 0.02, 0.03]
    rule = PoolRule.from_success(flat, tau=0.8, anomaly=2.0)
    assert not any(rule.passes(rate) for rate in flat)
    assert PoolRule.from_success([0.0] * 9 + [0.9], 0.8, 0.0).passes(0.9)  # tau alone still works
    assert not PoolRule.from_success([0.0] * 9 + [0.5], 0.8, 0.0).passes(0.5)


class AdditiveVictim(nn.Module):
    """Says class 0 unless the image correlates with a fixed +-1 pattern over the whole image (a
    SIG-like signal): then class 5. x + 16/255 * pattern does it; no 3x3 patch can move the
    correlation far enough (27 of 768 values)."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        half = torch.tensor([1.0, -1.0]).repeat_interleave(128)  # zero-sum in every channel
        signs = torch.stack([half[torch.randperm(256, generator=generator)] for _ in range(3)])
        self.register_buffer("pattern", signs.view(3, 16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        correlation = (x * self.pattern).flatten(1).mean(1)
        boost = 10 * torch.sigmoid(60 * (correlation - 0.045))  # > 5 only past 0.045
        clean = 5 * F.one_hot(torch.tensor(0), 10).float()  # soft enough to give a gradient
        return clean + boost[:, None] * F.one_hot(torch.tensor(5), 10)


def flat_images(count: int) -> torch.Tensor:
    """Plain-coloured images with a little noise: no correlation with a zero-sum pattern."""
    colours = torch.rand(count, 3, 1, 1) * 0.6 + 0.2
    return colours + 0.05 * (torch.rand(count, 3, 16, 16) - 0.5)


def test_the_additive_form_recovers_a_full_image_trigger_the_patch_cannot():
    torch.manual_seed(0)
    victim = AdditiveVictim().eval()
    images, held_out = flat_images(256), (flat_images(128), torch.randint(0, 10, (128,)))
    settings = RecoverySettings(hidden=64, steps=400, batch_size=64, staircase=(0.5,), tau=0.8)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    pool, scan, _ = recover_triggers(victim, images, held_out, [2, 5], settings, context)
    target = scan["labels"]["5"]
    assert scan["kept_labels"] == [5] and target["form"] == "additive"
    assert target["success"]["additive"]["beta=0.5"] >= 0.8
    assert target["success"]["patch"]["beta=0.5"] < 0.2
    assert pool[5][0].form == "additive"


class CornerVictim(nn.Module):
    """Class 5 when the bottom-right 3x3 corner is near-white, and there only (a trigger stamped
    after augmentation); otherwise a fixed random linear map of the mean colour."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 10)
        self.linear.weight.data *= 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        whiteness = x[:, :, -3:, -3:].mean((1, 2, 3))
        boost = 40 * torch.sigmoid(10 * (whiteness - 0.8))
        return self.linear(x.mean((2, 3))) + boost[:, None] * F.one_hot(torch.tensor(5), 10)


def test_the_corner_form_finds_a_patch_that_fires_in_one_corner_only():
    torch.manual_seed(0)
    victim = CornerVictim().eval()
    held_out = (flat_images(128) * 0.75, torch.randint(0, 10, (128,)))
    settings = RecoverySettings(hidden=64, steps=150, batch_size=64, staircase=(0.5,), tau=0.2)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    pool, scan, _ = recover_triggers(
        victim, flat_images(256) * 0.75, held_out, [2, 5], settings, context
    )
    target = scan["labels"]["5"]
    assert scan["kept_labels"] == [5] and target["form"] == "corner"
    # one corner of four fires: about a quarter of the held-out images go to 5
    assert 0.2 <= target["success"]["corner"]["beta=0.5"] <= 0.35
    best_elsewhere = max(target["success"][form]["beta=0.5"] for form in ("patch", "additive"))
    assert best_elsewhere < target["success"]["corner"]["beta=0.5"] - 0.08
    assert pool[5][0].form == "corner"


def test_every_staircase_step_is_checked_against_the_rule(monkeypatch):
    rates = {(5, 0): 0.9, (5, 1): 0.3, (5, 2): 0.95, (2, 0): 0.0}

    def fake(model, images, held_out, jobs, form, settings, context):
        return [(TriggerGenerator((3, 3, 3), 8, form), rates[job]) for job in jobs]

    monkeypatch.setattr(recovery, "trained_generators", fake)
    settings = RecoverySettings(trigger="patch", staircase=(0.5, 0.8, 0.9), tau=0.8, anomaly=0)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    pool, scan, _ = recover_triggers(nn.Identity(), None, None, [2, 5], settings, context)
    assert sorted(pool) == [5] and len(pool[5]) == 2  # step 1 (0.3 < tau) is dropped
    assert scan["labels"]["5"]["success"]["patch"] == {
        "beta=0.5": 0.9, "beta=0.8": 0.3, "beta=0.9": 0.95
    }  # fmt: skip


def test_each_form_is_judged_among_its_own_labels(monkeypatch):
    """The shared checkpoint's scan (the additive form is a universal perturbation towards most
    labels at 16/255), with the target's patch at 50% as on the issue's clean-label model: pooled
    with the additive rates the target is no outlier; among the patches it is."""
    patch = [0.016, 0.002, 0.02, 0.031, 0.025, 0.5, 0.026, 0.009, 0.013, 0.015]
    additive = [0.136, 0.0, 0.76, 0.769, 0.441, 0.411, 0.781, 0.027, 0.613, 0.662]
    corner = [0.02, 0.03, 0.01, 0.02, 0.04, 0.02, 0.03, 0.01, 0.02, 0.03]
    rates = {"patch": patch, "additive": additive, "corner": corner}

    def fake(model, images, held_out, jobs, form, settings, context):
        return [(TriggerGenerator((3, 3, 3), 8, form), rates[form][label]) for label, _ in jobs]

    monkeypatch.setattr(recovery, "trained_generators", fake)
    settings = RecoverySettings(staircase=(0.5,), tau=0.8, anomaly=2.0)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    pool, scan, _ = recover_triggers(nn.Identity(), None, None, list(range(10)), settings, context)
    assert scan["kept_labels"] == [5] and pool[5][0].form == "patch"
    assert scan["labels"]["5"]["anomaly_index"]["patch"] > 2
    pooled = PoolRule.from_success(
        [max(p, a) for p, a in zip(patch, additive, strict=True)], 0.8, 2
    )
    assert not pooled.passes(0.5)
