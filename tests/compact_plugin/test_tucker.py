"""Tucker-2 by HOSVD, its truncation, and the three-conv layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from purify_backdoor.compact.tucker import TuckerConv2d, hosvd


def kernel(out=8, inp=6, k=3, seed=0) -> torch.Tensor:
    return torch.randn(out, inp, k, k, generator=torch.Generator().manual_seed(seed))


def test_full_rank_reconstruction_is_exact():
    weight = kernel()
    decomposition = hosvd(weight)
    assert decomposition.core.shape == (8, 6, 3, 3)
    assert torch.allclose(decomposition.reconstruct().float(), weight, atol=1e-6)


def test_error_falls_monotonically_with_rank():
    weight = kernel().double()
    decomposition = hosvd(weight)
    errors = [
        (decomposition.truncate(rank, min(rank, 6)).reconstruct() - weight).norm().item()
        for rank in range(1, 9)
    ]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(errors, errors[1:], strict=False))
    assert errors[0] > 0.5 * weight.norm().item() > errors[-1] and errors[-1] < 1e-9


@pytest.mark.parametrize(("stride", "padding", "bias"), [(1, 1, False), (2, 0, True)])
def test_layer_matches_the_conv_at_full_rank(stride, padding, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, stride=stride, padding=padding, bias=bias)
    layer = TuckerConv2d.from_decomposition(conv, hosvd(conv.weight))
    images = torch.rand(2, 6, 9, 9)
    assert torch.allclose(layer(images), conv(images), atol=1e-5)
    assert torch.allclose(layer.dense_weight(), conv.weight, atol=1e-6)


def test_truncated_layer_has_fewer_parameters_and_its_own_dense_kernel():
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)
    layer = TuckerConv2d.from_decomposition(conv, hosvd(conv.weight).truncate(4, 5))
    assert layer.ranks == (4, 5)
    assert sum(p.numel() for p in layer.parameters()) == 16 * 5 + 4 * 5 * 9 + 16 * 4
    images = torch.rand(2, 16, 6, 6)
    dense = nn.functional.conv2d(images, layer.dense_weight(), padding=1)
    assert torch.allclose(layer(images), dense, atol=1e-5)
