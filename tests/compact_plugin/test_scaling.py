"""Rank clipping: below-threshold components untouched, outsized ones brought to the threshold."""

from __future__ import annotations

import torch

from purify_backdoor.compact.scaling import clip_factors, normalized_singular_values, scale_core
from purify_backdoor.compact.tucker import hosvd, unfold


def test_values_under_the_threshold_are_unchanged_and_outliers_clipped_to_it():
    singular = torch.tensor([10.0, 2.0, 1.0, 1.0])  # shares 0.714, 0.143, 0.071, 0.071
    factors = clip_factors(singular, tau_scale=2.0)  # threshold 2 x mean share = 0.5
    assert torch.equal(factors[1:], torch.ones(3))
    share = normalized_singular_values(singular)
    assert torch.isclose(share[0] * factors[0], torch.tensor(0.5))


def test_smaller_tau_clips_more():
    singular = torch.tensor([8.0, 4.0, 2.0, 1.0, 1.0])
    clipped = [int((clip_factors(singular, tau) < 1).sum()) for tau in (4.0, 2.0, 1.0, 0.5)]
    assert clipped == sorted(clipped) and clipped[0] < clipped[-1]


def test_core_rows_below_threshold_keep_their_norm():
    core = hosvd(torch.randn(8, 6, 3, 3, generator=torch.Generator().manual_seed(1))).core
    before = unfold(core, 0).norm(dim=1)
    scaled, clipped = scale_core(core, tau_scale=1.2)
    keep = clip_factors(before, 1.2) == 1
    assert clipped["mode1"] == int((~keep).sum()) > 0
    after = unfold(scaled, 0).norm(dim=1)
    assert torch.all(after <= before + 1e-9)


def test_huge_tau_changes_nothing():
    core = torch.randn(4, 4, 3, 3)
    scaled, clipped = scale_core(core, tau_scale=1e6)
    assert torch.equal(scaled, core) and clipped == {"mode1": 0, "mode2": 0}
