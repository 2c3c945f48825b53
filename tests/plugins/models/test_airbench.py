"""The airbench94 network: the size the issue's >= 1M-parameter bar needs, the paper's map sizes
and its scaled head."""

from __future__ import annotations

import torch

from purify_backdoor.models.airbench import OUTPUT_SCALE, AirbenchNet
from purify_backdoor.models.registry import build_model


def test_has_the_papers_parameter_count():
    model = build_model("airbench94", 10)
    assert isinstance(model, AirbenchNet)
    assert 1_950_000 < sum(p.numel() for p in model.parameters()) < 2_000_000


def test_maps_shrink_from_31_to_one_position():
    model = AirbenchNet(num_classes=7).eval()
    sizes = []
    for block in (model.block1, model.block2, model.block3):
        block.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    stem = model.stem(torch.zeros(2, 3, 32, 32))
    assert stem.shape[-1] == 31
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert sizes == [15, 7, 3]


def test_logits_are_the_linear_layers_output_scaled():
    torch.manual_seed(0)
    model = AirbenchNet().eval()
    images = torch.rand(3, 3, 32, 32)
    maps = model.block3(model.block2(model.block1(model.stem(images))))
    features = model.pool(maps).flatten(1)
    expected = features @ model.linear.weight.T * OUTPUT_SCALE
    assert torch.allclose(model(images), expected, atol=1e-6)
