"""Rank choice for a parameter compression target."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from purify_backdoor.compact.ranks import RULES, choose_ranks, parameters_with
from purify_backdoor.errors import PurifyError
from tests.conftest import tiny_wideresnet


@pytest.mark.parametrize("target", [1.5, 2.0, 3.0])
def test_target_is_reached_with_the_largest_keep_fraction(target):
    model = tiny_wideresnet()
    total = sum(p.numel() for p in model.parameters())
    ranks = choose_ranks(model, target, "uniform")
    assert total / parameters_with(model, ranks) >= target
    assert total / parameters_with(model, ranks) < target * 1.3


def test_no_compression_keeps_every_layer_dense():
    assert choose_ranks(tiny_wideresnet(), 1.0) == {}


def test_unreachable_target_is_a_clear_error():
    with pytest.raises(PurifyError, match="out of reach"):
        choose_ranks(tiny_wideresnet(), 1000.0)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("target", [1.5, 2.0])
def test_each_rule_reaches_the_target(rule, target):
    model = tiny_wideresnet()
    total = sum(p.numel() for p in model.parameters())
    assert total / parameters_with(model, choose_ranks(model, target, rule)) >= target


def test_energy_rule_keeps_the_stem_dense_and_spends_ranks_where_the_spectrum_is_flat():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.Conv2d(32, 32, 3), nn.Conv2d(32, 32, 3)
    )  # fmt: skip
    with torch.no_grad():
        steep = torch.randn(32, 4) @ torch.randn(4, 32 * 9)  # rank 4 in mode 1
        model[1].weight.copy_((steep + 0.01 * torch.randn(32, 32 * 9)).reshape(32, 32, 3, 3))
    ranks = choose_ranks(model, 1.5, "energy")
    assert "0" not in ranks
    assert ranks["1"][0] < ranks.get("2", (32, 32))[0]  # a flat layer left dense has all ranks
    assert ranks["1"][0] >= 4  # the four directions carrying the energy are kept
