"""Rank choice for a parameter compression target."""

from __future__ import annotations

import pytest

from compact_plugin.ranks import choose_ranks, parameters_with
from plugins.errors import PurifyError
from tests.conftest import tiny_wideresnet


@pytest.mark.parametrize("target", [1.5, 2.0, 3.0])
def test_target_is_reached_with_the_largest_keep_fraction(target):
    model = tiny_wideresnet()
    total = sum(p.numel() for p in model.parameters())
    ranks = choose_ranks(model, target)
    assert total / parameters_with(model, ranks) >= target
    assert total / parameters_with(model, ranks) < target * 1.3


def test_no_compression_keeps_every_layer_dense():
    assert choose_ranks(tiny_wideresnet(), 1.0) == {}


def test_unreachable_target_is_a_clear_error():
    with pytest.raises(PurifyError, match="out of reach"):
        choose_ranks(tiny_wideresnet(), 1000.0)
