import torch
from torch import nn

from purify_backdoor.medic.layers import ActivationRecorder
from purify_backdoor.medic.statistics import SIGMA_FLOOR, teacher_statistics


def test_per_channel_mean_and_std_over_all_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Flatten(), nn.Linear(5 * 36, 4)).eval()
    recorder = ActivationRecorder([model[0], model[2]])
    batches = [torch.randn(7, 3, 8, 8) for _ in range(3)]
    stats = teacher_statistics(model, recorder, batches)
    with torch.no_grad():
        conv = torch.cat([model[0](b) for b in batches])
        linear = torch.cat([model(b) for b in batches])
    (conv_mu, conv_sigma), (lin_mu, lin_sigma) = stats
    assert conv_mu.shape == (1, 5, 1, 1) and lin_mu.shape == (1, 4)
    assert torch.allclose(conv_mu.flatten(), conv.mean((0, 2, 3)), atol=1e-5)
    expected = conv.transpose(0, 1).reshape(5, -1).std(1, unbiased=False) + SIGMA_FLOOR
    assert torch.allclose(conv_sigma.flatten(), expected, atol=1e-5)
    assert torch.allclose(lin_mu.flatten(), linear.mean(0), atol=1e-5)
    assert torch.allclose(
        lin_sigma.flatten(), linear.std(0, unbiased=False) + SIGMA_FLOOR, atol=1e-5
    )
