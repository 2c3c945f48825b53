import torch
import torchvision
from torch import nn

from purify_backdoor.medic.cloning import MedicSettings, clone_losses
from purify_backdoor.medic.layers import ActivationRecorder, channel_axis, cloned_layers
from purify_backdoor.medic.reinit import fresh_clone
from purify_backdoor.medic.statistics import sigma_floor, teacher_statistics
from tests.conftest import tiny_wideresnet


def test_per_channel_mean_and_std_over_all_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Flatten(), nn.Linear(5 * 36, 4)).eval()
    recorder = ActivationRecorder([model[0], model[2]])
    batches = [torch.randn(7, 3, 8, 8) for _ in range(3)]
    stats = teacher_statistics(model, recorder, batches, [1, -1])
    with torch.no_grad():
        conv = torch.cat([model[0](b) for b in batches])
        linear = torch.cat([model(b) for b in batches])
    (conv_mu, conv_sigma), (lin_mu, lin_sigma) = stats
    assert conv_mu.shape == (1, 5, 1, 1) and lin_mu.shape == (1, 4)
    assert torch.allclose(conv_mu.flatten(), conv.mean((0, 2, 3)), atol=1e-5)
    expected = conv.transpose(0, 1).reshape(5, -1).std(1, unbiased=False)
    assert torch.allclose(conv_sigma.flatten(), sigma_floor(expected), atol=1e-5)
    assert torch.allclose(lin_mu.flatten(), linear.mean(0), atol=1e-5)
    assert torch.allclose(
        lin_sigma.flatten(), sigma_floor(linear.std(0, unbiased=False)), atol=1e-5
    )


def test_token_features_are_pooled_over_the_last_axis():
    vit = torchvision.models.VisionTransformer(16, 4, 1, 2, 8, 16, num_classes=10).eval()
    norm = vit.encoder.layers[0].ln_1
    assert channel_axis(norm) == -1 and channel_axis(vit.conv_proj) == 1
    recorder = ActivationRecorder([norm])
    batches = [torch.rand(3, 3, 16, 16) for _ in range(2)]
    ((mu, sigma),) = teacher_statistics(vit, recorder, batches, [-1])
    with torch.no_grad():
        recorder.take()
        outputs = []
        for batch in batches:
            vit(batch)
            outputs += recorder.take()
    tokens = torch.cat(outputs)  # (N, 1 + 16 patches, 8 features)
    assert mu.shape == (1, 1, 8) and sigma.shape == (1, 1, 8)
    assert torch.allclose(mu.flatten(), tokens.reshape(-1, 8).mean(0), atol=1e-5)


def test_the_sigma_floor_keeps_live_channels_and_bounds_dead_ones():
    sigma = torch.tensor([1.0, 2.0, 0.0, 1.5])
    floored = sigma_floor(sigma)
    assert torch.equal(floored[[0, 1, 3]], sigma[[0, 1, 3]])
    assert torch.isclose(floored[2], sigma.square().mean().sqrt() / 2)
    assert torch.equal(sigma_floor(torch.zeros(3)), torch.ones(3))


def test_a_dead_channel_does_not_blow_up_the_clone_loss():
    """A BatchNorm weight set to 0 (as a pruning defense leaves it): the channel is constant, its
    sigma 0. The clone loss at initialisation may grow, but stays of the same order."""

    def initial_loss(teacher):
        torch.manual_seed(1)
        clone = fresh_clone(teacher, "wrn10-1").train()
        layers = cloned_layers(teacher)
        hooks = tuple(
            ActivationRecorder([dict(m.named_modules())[n] for n, _ in layers])
            for m in (teacher, clone)
        )
        batches = [
            torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(k)) for k in range(4)
        ]
        stats = teacher_statistics(teacher, hooks[0], batches, [1] * len(layers))
        target = torch.zeros(32, dtype=torch.long)
        _, _, loss = clone_losses(teacher, clone, hooks, batches[0], target, stats, MedicSettings())
        for recorder in hooks:
            recorder.remove()
        return loss.item()

    teacher = tiny_wideresnet().requires_grad_(False)
    alive = initial_loss(teacher)
    teacher.block2.layer[0].bn2.weight.data[3] = 0.0
    dead = initial_loss(teacher)
    assert dead < 2 * alive, (alive, dead)
