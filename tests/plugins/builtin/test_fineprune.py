"""Fine-pruning: quiet channels go first, pruning stops at the accuracy budget, pruned channels
stay pruned through fine-tuning."""

from __future__ import annotations

import torch
from torch import nn

from purify_backdoor.builtin.fineprune import prune_quiet_channels
from tests.plugins.test_cli import invoke


def test_quiet_channels_are_pruned_until_accuracy_would_drop():
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (200,))
    informative = labels.float()[:, None] * 2 + 0.1 * torch.randn(200, 1)  # loud, decides
    quiet = 0.01 * torch.rand(200, 3)  # near-silent channels
    features = torch.cat([quiet, informative], 1)
    fc = nn.Linear(4, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, -1.0], [0.0, 5.0, 0.0, 1.0]]))
        fc.bias.copy_(torch.tensor([1.0, -1.0]))
    pruned = prune_quiet_channels(fc, features, labels, max_drop=0.05, max_ratio=1.0)
    assert sorted(pruned) == [0, 1, 2]  # the informative channel 3 would cost accuracy
    assert torch.equal(fc.weight[:, [0, 1, 2]], torch.zeros(2, 3))
    assert fc.weight[1, 3] == 1.0


def test_fineprune_runs_and_keeps_pruned_channels_at_zero(nad_checkpoint, tiny_data):
    result = invoke(
        "--plugin", "fineprune", nad_checkpoint, "--data", tiny_data, "--ratio", "0.5",
        "-o", "epochs=2", "-o", "max_drop=0.5", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = nad_checkpoint.with_name("model.purified.pth.tar")
    weight = torch.load(out, weights_only=True)["state_dict"]["fc.weight"]
    zero_columns = int((weight.abs().sum(0) == 0).sum())
    assert zero_columns > 0
