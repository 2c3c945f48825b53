"""Activation-fitted Tucker-2 layers: exact at full rank, and at low rank better than the kernel's
HOSVD on inputs that use only a few directions."""

from __future__ import annotations

import torch
from torch import nn

from purify_backdoor.compact.activation_fit import fit_to_activations, fitted_layer
from purify_backdoor.compact.ranks import choose_ranks
from purify_backdoor.compact.tucker import TuckerConv2d, hosvd
from tests.conftest import tiny_wideresnet


def _conv(seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(8, 12, 3, padding=1, bias=True)


def test_full_rank_fit_computes_the_same_function():
    conv = _conv(0)
    inputs = torch.randn(16, 8, 10, 10)
    layer = fitted_layer(conv, inputs, 12, 8)
    assert torch.allclose(layer(inputs), conv(inputs), atol=1e-4)


def test_low_rank_fit_beats_the_kernel_hosvd_on_inputs_with_few_directions():
    conv = _conv(1)
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(8, 3, generator=generator)  # inputs span 3 of 8 channel directions
    inputs = torch.einsum("cd,ndhw->nchw", mixing, torch.randn(32, 3, 10, 10, generator=generator))
    target = conv(inputs)
    fitted = fitted_layer(conv, inputs, 6, 3)
    plain = TuckerConv2d.from_decomposition(conv, hosvd(conv.weight).truncate(6, 3))
    fitted_error = (fitted(inputs) - target).square().mean()
    plain_error = (plain(inputs) - target).square().mean()
    assert fitted_error < 0.5 * plain_error


def test_fit_replaces_exactly_the_ranked_layers():
    model = tiny_wideresnet().eval()
    ranks = choose_ranks(model, 2.0)
    fit_to_activations(model, model, torch.rand(8, 3, 16, 16), ranks, torch.device("cpu"))
    replaced = {n for n, m in model.named_modules() if isinstance(m, TuckerConv2d)}
    assert replaced == set(ranks)
    for name, pair in ranks.items():
        assert model.get_submodule(name).ranks == pair


def test_reference_fit_undoes_an_earlier_layers_error():
    """Asymmetric reconstruction: inputs distorted by a channel mixing (an earlier layer's error)
    still give the original layer's outputs, which the plain fit cannot."""
    conv = _conv(2)
    generator = torch.Generator().manual_seed(1)
    original = torch.randn(16, 8, 10, 10, generator=generator)
    mixing = torch.eye(8) + 0.5 * torch.randn(8, 8, generator=generator)
    distorted = torch.einsum("cd,ndhw->nchw", mixing, original)
    target = conv(original)
    corrected = fitted_layer(conv, distorted, 12, 8, original_inputs=original)
    plain = fitted_layer(conv, distorted, 12, 8)
    corrected_error = (corrected(distorted) - target).square().mean()
    plain_error = (plain(distorted) - target).square().mean()
    assert corrected_error < 1e-3 * target.square().mean()
    assert corrected_error < 0.01 * plain_error


def test_reference_fit_of_an_unchanged_model_keeps_its_function():
    model = tiny_wideresnet().eval()
    reference = tiny_wideresnet().eval()
    reference.load_state_dict(model.state_dict())
    images = torch.rand(16, 3, 16, 16)
    full = {
        name: (conv.out_channels, conv.in_channels)
        for name, conv in model.named_modules()
        if isinstance(conv, nn.Conv2d)
    }
    fit_to_activations(model, model, images, full, torch.device("cpu"), reference=reference)
    assert torch.allclose(model(images), reference(images), atol=1e-3)
