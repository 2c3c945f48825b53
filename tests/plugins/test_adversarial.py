import torch
from torch import nn

from purify_backdoor.adversarial import pgd_away_from_label


def test_pgd_raises_the_loss_within_the_budget():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    images, labels = torch.rand(16, 3, 8, 8), torch.randint(0, 4, (16,))
    eps = 8 / 255
    adversarial = pgd_away_from_label(model, images, labels, eps, 10, torch.Generator())
    assert (adversarial - images).abs().max() <= eps + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    loss = nn.functional.cross_entropy
    assert loss(model(adversarial), labels) > loss(model(images), labels) + 0.1
