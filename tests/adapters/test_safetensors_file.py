"""`--save-format safetensors`: tensors only, and the file alone rebuilds the model."""

from __future__ import annotations

import torch
from safetensors import safe_open

from purify_backdoor.checkpoints import open_checkpoint, save_checkpoint
from purify_backdoor.manager import lookup
from purify_backdoor.models.normalized import Normalized
from purify_backdoor.plugin_types import InputConvention, LoadedModel
from tests.conftest import tiny_wideresnet
from tests.plugins.test_cli import invoke


def test_round_trip_keeps_outputs_convention_and_attack(tmp_path):
    model = Normalized(tiny_wideresnet(), (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)).eval()
    loaded = LoadedModel(
        model=model,
        convention=InputConvention((16, 16), 10, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)),
        arch="wrn10-1",
        format="backdoorbench",
        attack={"name": "badnet", "options": {"target": 5}},
    )
    path = tmp_path / "model.safetensors"
    save_checkpoint(lookup("adapter", "safetensors"), loaded, model, path)

    adapter, again = open_checkpoint(path)
    assert adapter.name == "safetensors" and again.arch == "wrn10-1"
    assert again.convention == loaded.convention and again.attack == loaded.attack
    images = torch.rand(4, 3, 16, 16)
    assert torch.equal(model(images), again.model(images))


def test_purify_writes_safetensors_beside_the_input(nad_checkpoint, tiny_data):
    result = invoke(
        "--plugin", "finetune", nad_checkpoint, "--data", tiny_data, "--ratio", "0.5",
        "-o", "epochs=1", "--save-format", "safetensors", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = nad_checkpoint.with_name("model.purified.safetensors")
    with safe_open(out, framework="pt") as handle:
        assert "block1.layer.0.conv1.weight" in list(handle.keys())
    assert open_checkpoint(out)[1].arch == "wrn10-1"
    assert "acc" in invoke("eval", out, "--data", tiny_data, "-q").output
