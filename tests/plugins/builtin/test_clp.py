"""CLP: the channel Lipschitz bound, the pruning rule, conv-BN pairing, and a data-free run."""

from __future__ import annotations

import torch
from torch import nn

from purify_backdoor.builtin.clp import channel_lipschitz_bounds, clp_prune, conv_bn_pairs
from purify_backdoor.models.airbench import AirbenchNet
from purify_backdoor.models.preact_resnet import PreActResNet
from tests.conftest import tiny_wideresnet
from tests.plugins.test_cli import invoke


def test_bound_is_scaled_largest_singular_value():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)
    bn.weight.data = torch.tensor([1.0, -2.0, 0.5, 3.0])
    bn.running_var = torch.tensor([4.0, 1.0, 0.25, 9.0])
    expected = [
        abs(bn.weight[k].item()) / bn.running_var[k].sqrt().item()
        * torch.linalg.svdvals(conv.weight[k].detach().reshape(3, 9))[0].item()
        for k in range(4)
    ]  # fmt: skip
    assert torch.allclose(channel_lipschitz_bounds(conv, bn), torch.tensor(expected))


def test_outlier_channel_is_pruned_and_others_kept():
    model = tiny_wideresnet()
    conv, bn = model.block1.layer[0].conv1, model.block1.layer[0].bn2
    with torch.no_grad():
        conv.weight[5] *= 50
        bn.bias.fill_(0.1)
    untouched = {k: v.clone() for k, v in model.state_dict().items()}
    details = clp_prune(model, u=3.0)
    assert details["pruned"]["block1.layer.0.bn2"] == [5]
    assert bn.weight[5] == 0 and bn.bias[5] == 0
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, untouched[k])]
    assert set(changed) == {"block1.layer.0.bn2.weight", "block1.layer.0.bn2.bias"}
    assert bn(conv(torch.rand(2, 16, 8, 8)))[:, 5].abs().max() == 0


def test_preact_pairs_follow_the_graph_not_module_order():
    pairs, how = conv_bn_pairs(PreActResNet((1, 1, 1, 1), 10))
    names = [name for name, _, _ in pairs]
    assert how == "graph"
    assert "layer1.0.bn2" in names and "layer2.0.bn1" not in names  # bn1 reads a residual sum


def test_pairs_reach_through_pooling_to_the_conv():
    model = AirbenchNet()
    pairs, how = conv_bn_pairs(model)
    found = {name: conv for name, conv, _ in pairs}
    assert how == "graph"
    assert len(pairs) == 7  # the stem's BN and both of each block's
    assert found["block2.2"] is model.block2[0]  # conv -> max-pool -> BN


def test_runs_without_data(nad_checkpoint):
    result = invoke("--plugin", "clp", nad_checkpoint, "-q", "-o", "u=0")
    assert result.exit_code == 0, result.output
    assert nad_checkpoint.with_name("model.purified.pth.tar").exists()
