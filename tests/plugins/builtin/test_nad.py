"""NAD's attention maps and loss, and a run on a tiny model."""

from __future__ import annotations

import torch

from purify_backdoor.builtin.nad import attention_loss, attention_map, distilled_layer
from purify_backdoor.models.airbench import AirbenchNet
from tests.plugins.test_cli import invoke


def test_attention_map_is_channel_energy_with_unit_spatial_norm():
    features = torch.randn(2, 4, 3, 3)
    maps = attention_map(features, p=2)
    assert maps.shape == (2, 1, 3, 3)
    assert torch.allclose(maps.flatten(1).norm(dim=1), torch.ones(2), atol=1e-5)
    energy = features.square().sum(1, keepdim=True)
    assert torch.allclose(maps, energy / energy.flatten(1).norm(dim=1)[:, None, None, None])


def test_loss_is_zero_for_the_same_attention_and_positive_otherwise():
    features = torch.randn(2, 4, 3, 3)
    assert attention_loss(features, 3 * features, p=2) < 1e-10  # scale does not matter
    assert attention_loss(features, torch.randn(2, 4, 3, 3), p=2) > 0


def test_auto_layer_is_the_last_group_of_airbench94():
    model = AirbenchNet()
    assert distilled_layer(model, "auto") is model.block3


def test_nad_runs_on_a_tiny_model(nad_checkpoint, tiny_data):
    result = invoke(
        "--plugin", "nad", nad_checkpoint, "--data", tiny_data, "--ratio", "0.5",
        "-o", "teacher_epochs=1", "-o", "epochs=1", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert nad_checkpoint.with_name("model.purified.pth.tar").exists()
