"""ZeroQ-style synthesis lowers the BatchNorm-statistics loss it optimises."""

from __future__ import annotations

import torch

from purify_backdoor.compact.synthesis import BatchNormInputs, SynthesisSettings, synthesize
from purify_backdoor.plugin_types import RunContext
from tests.conftest import tiny_wideresnet


def model_with_statistics() -> torch.nn.Module:
    model = tiny_wideresnet()
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean = torch.randn(module.num_features, generator=generator) * 0.3
            module.running_var = torch.rand(module.num_features, generator=generator) + 0.5
    return model.eval()


def test_loss_is_zero_when_statistics_match():
    bn = torch.nn.BatchNorm2d(3).eval()
    x = torch.randn(64, 3, 4, 4)
    bn.running_mean = x.mean(dim=(0, 2, 3))
    bn.running_var = x.var(dim=(0, 2, 3), unbiased=False)
    recorder = BatchNormInputs(bn)
    bn(x)
    assert recorder.loss().item() < 1e-10


def test_synthesis_reduces_the_bn_statistics_loss():
    model = model_with_statistics()
    settings = SynthesisSettings(count=32, iterations=30, batch_size=32)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    images, labels, statistics = synthesize(model, (16, 16), 10, settings, context)
    assert (
        images.shape == (32, 3, 16, 16)
        and labels.shape == (32,)
        and images.min() >= 0
        and images.max() <= 1
    )
    assert statistics["bn_loss_end"] < 0.8 * statistics["bn_loss_start"]
    assert all(p.requires_grad for p in model.parameters())
