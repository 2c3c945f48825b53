"""ANP: the masked/perturbed BN hook, the mask search singling out a harmful neuron, threshold
pruning, and a run on a tiny checkpoint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor.builtin import anp
from purify_backdoor.builtin.anp import optimise_masks, perturbable, prune_by_threshold
from purify_backdoor.plugin_types import RunContext
from tests.conftest import tiny_wideresnet
from tests.plugins.test_cli import invoke

OPTIONS = {"eps": 0.4, "alpha": 0.2, "lr": 0.2, "iterations": 60, "batch_size": 32}


def test_hook_applies_mask_and_perturbation_with_batch_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.5, 0.0, 1.0]))
    x = torch.randn(4, 3, 5, 5)
    normalised = F.batch_norm(x, None, None, training=True, eps=bn.eps)
    with perturbable(bn) as layers:
        layer = layers[""]
        plain = normalised * bn.weight[:, None, None] + bn.bias[:, None, None]
        assert torch.allclose(bn(x), plain, atol=1e-6)
        with torch.no_grad():
            layer.mask.copy_(torch.tensor([1.0, 0.0, 0.5]))
            layer.scale_noise.fill_(0.25)
            layer.shift_noise.fill_(-0.5)
        layer.perturbed = True
        scale = bn.weight * (layer.mask + 0.25)
        expected = normalised * scale[:, None, None] + (0.5 * bn.bias)[:, None, None]
        assert torch.allclose(bn(x), expected.detach(), atol=1e-6)
    plain = bn(x)
    assert torch.allclose(plain, x / (1 + bn.eps) ** 0.5 * bn.weight[:, None, None]
                          + bn.bias[:, None, None])  # fmt: skip  # hook removed: eval BN again


class TwoChannelNet(nn.Module):
    """Channel 0 carries the label, channel 1 only adds noise to the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2)[:, :, None, None])
            self.fc.weight.copy_(torch.tensor([[-3.0, 3.0], [3.0, -3.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_mask_search_shuts_the_neuron_that_hurts_clean_predictions():
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (256,))
    signal = labels.float()[:, None, None, None].expand(256, 1, 8, 8)
    noise = torch.rand(256, 1, 1, 1).expand(256, 1, 8, 8)  # per image, survives pooling
    images = torch.cat([signal, noise], 1)
    model = TwoChannelNet()
    before = {k: v.clone() for k, v in model.named_parameters()}
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    masks = optimise_masks(model, images, labels, OPTIONS, context)
    mask = masks["bn"]
    assert ((mask >= 0) & (mask <= 1)).all()
    assert mask[1] < 0.2 < mask[0]
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters())


def test_prune_by_threshold_zeroes_the_scale_of_low_masks_only():
    model = tiny_wideresnet()
    name = "block1.layer.0.bn1"
    bn = dict(model.named_modules())[name]
    masks = {name: torch.ones(bn.num_features)}
    masks[name][[2, 7]] = torch.tensor([0.2, 0.05])
    masks[name][3] = 0.21
    bias = bn.bias.clone()
    pruned = prune_by_threshold(model, masks, threshold=0.2)
    assert pruned == {name: [2, 7]}
    assert bn.weight[[2, 7]].abs().sum() == 0 and bn.weight[3] != 0
    assert torch.equal(bn.bias, bias)


def test_anp_runs_on_a_tiny_checkpoint(nad_checkpoint, tiny_data):
    result = invoke(
        "--plugin", "anp", nad_checkpoint, "--data", tiny_data, "--ratio", "0.5",
        "-o", "iterations=3", "-o", "batch_size=16", "-o", "threshold=0.99", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = nad_checkpoint.with_name("model.purified.pth.tar")
    state = torch.load(out, weights_only=True)["state_dict"]
    original = torch.load(nad_checkpoint, weights_only=True)["state_dict"]
    changed = [k for k in original if not torch.equal(original[k], state[k])]
    assert changed and all(k.endswith(".weight") and "bn" in k for k in changed)


class Interrupt(Exception):
    pass


def test_interrupted_mask_search_resumes_to_the_same_masks(tmp_path, monkeypatch):
    monkeypatch.setattr(anp, "SAVE_EVERY", 4)
    images, labels = torch.rand(64, 3, 16, 16), torch.randint(0, 10, (64,))
    options = OPTIONS | {"iterations": 10, "batch_size": 16}
    cpu = torch.device("cpu")
    whole = optimise_masks(tiny_wideresnet(), images, labels, options, RunContext(cpu, 1))

    hooked, calls = tiny_wideresnet(), {"n": 0}

    def interrupt(module, inputs):
        calls["n"] += 1
        if calls["n"] == 3 * 6:  # three passes a step: stop in the 6th, after the save at 4
            raise Interrupt

    hooked.register_forward_pre_hook(interrupt)
    with pytest.raises(Interrupt):
        optimise_masks(hooked, images, labels, options, RunContext(cpu, 1, workdir=tmp_path))
    assert torch.load(tmp_path / "anp.state.pt", weights_only=True)["epoch"] == 4
    context = RunContext(cpu, 1, workdir=tmp_path, resume=True)
    resumed = optimise_masks(tiny_wideresnet(), images, labels, options, context)
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)
