"""Rank clipping: below-threshold components untouched, outsized ones brought to the threshold;
mode 2 scaled on the core's own mode-2 singular values after mode 1; one T per layer or global."""

from __future__ import annotations

import torch

from purify_backdoor.compact.scaling import (
    clip_factors,
    normalized_singular_values,
    rotate_to_mode2_singular_vectors,
    scale_cores,
)
from purify_backdoor.compact.tucker import Tucker2, hosvd, unfold


def kernel(seed: int, shape=(8, 6, 3, 3)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_values_under_the_threshold_are_unchanged_and_outliers_clipped_to_it():
    singular = torch.tensor([10.0, 2.0, 1.0, 1.0])  # normalized 1, 0.2, 0.1, 0.1: mean 0.35
    factors = clip_factors(singular, tau_scale=2.0)  # threshold 2 x 0.35 = 0.7
    assert torch.equal(factors[1:], torch.ones(3))
    share = normalized_singular_values(singular)
    assert torch.isclose(share[0] * factors[0], torch.tensor(0.7))


def test_smaller_tau_clips_more():
    singular = torch.tensor([8.0, 4.0, 2.0, 1.0, 1.0])
    clipped = [int((clip_factors(singular, tau) < 1).sum()) for tau in (4.0, 2.0, 1.0, 0.5)]
    assert clipped == sorted(clipped) and clipped[0] < clipped[-1]


def test_rotation_onto_mode2_singular_vectors_keeps_the_kernel():
    d = hosvd(kernel(1))
    skewed = Tucker2(
        d.core * torch.linspace(3, 0.5, 8).view(-1, 1, 1, 1), d.out_factor, d.in_factor
    )
    rotated, singular = rotate_to_mode2_singular_vectors(skewed)
    assert torch.allclose(rotated.reconstruct(), skewed.reconstruct(), atol=1e-10)
    rows = unfold(rotated.core, 1)
    gram = rows @ rows.T
    assert torch.allclose(gram, torch.diag(singular**2), atol=1e-8)  # rows orthogonal
    assert torch.all(singular[:-1] >= singular[1:])


def test_mode2_is_scaled_on_singular_values_after_mode1_scaling():
    d = hosvd(kernel(2))
    scaled, report = scale_cores({"conv": d}, tau_scale=1.1)
    assert report["conv"]["clipped"]["mode1"] > 0
    mode2 = torch.linalg.svdvals(unfold(scaled["conv"].core, 1))
    top = normalized_singular_values(mode2)
    assert report["conv"]["clipped"]["mode2"] > 0
    # after clipping, the outsized mode-2 components sit at one level: the threshold
    clipped = report["conv"]["clipped"]["mode2"]
    assert torch.allclose(top[:clipped], torch.ones_like(top[:clipped]), atol=1e-6)


def test_huge_tau_changes_no_kernel():
    d = hosvd(kernel(3))
    scaled, report = scale_cores({"conv": d}, tau_scale=1e6)
    assert torch.allclose(scaled["conv"].reconstruct(), d.reconstruct(), atol=1e-10)
    assert report["conv"]["clipped"] == {"mode1": 0, "mode2": 0}


def test_global_statistic_holds_every_layer_to_one_mean():
    flat = hosvd(torch.eye(8).view(8, 8, 1, 1).repeat(1, 1, 3, 3))  # all components equal
    peaked = hosvd(kernel(4) * torch.logspace(1, -2, 8).view(-1, 1, 1, 1))
    layers = {"flat": flat, "peaked": peaked}
    _, own = scale_cores(layers, tau_scale=1.5, statistic="layer")
    _, shared = scale_cores(layers, tau_scale=1.5, statistic="global")
    assert own["flat"]["mean"] != own["peaked"]["mean"]
    assert shared["flat"]["mean"] == shared["peaked"]["mean"]
    assert own["flat"]["clipped"]["mode1"] == 0 < shared["flat"]["clipped"]["mode1"]
