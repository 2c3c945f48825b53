"""The MINE lower bound approaches a known mutual information."""

from __future__ import annotations

import math

import torch

from purify_backdoor.unlearn.mine import MineTrainer, StatisticsNetworks, mutual_information_bound


def correlated(count: int, noise: float, generator: torch.Generator):
    x = torch.randn(1, count, 1, generator=generator)
    return x, x + noise * torch.randn(1, count, 1, generator=generator)


def test_bound_approaches_the_mutual_information_of_correlated_gaussians():
    torch.manual_seed(0)
    noise = 0.5
    truth = 0.5 * math.log(1 + 1 / noise**2)  # I(X; X + N(0, s^2)) for X ~ N(0, 1): 0.80 nats
    generator = torch.Generator().manual_seed(0)
    network = StatisticsNetworks(1, 1, 1, hidden=64)
    trainer = MineTrainer(network, lr=1e-3)
    for _ in range(1500):
        x, y = correlated(256, noise, generator)
        trainer.step(x, y, torch.randn(1, 256, 1, generator=generator))
    x, y = correlated(20000, noise, generator)
    with torch.no_grad():
        estimate = mutual_information_bound(
            network, x, y, torch.randn(1, 20000, 1, generator=generator)
        )
    assert truth - 0.15 < estimate.item() < truth + 0.05


def test_independent_variables_give_about_zero():
    generator = torch.Generator().manual_seed(1)
    network = StatisticsNetworks(1, 1, 1, hidden=32)
    trainer = MineTrainer(network, lr=1e-3)
    for _ in range(300):
        trainer.step(*(torch.randn(1, 256, 1, generator=generator) for _ in range(3)))
    a, b, c = (torch.randn(1, 20000, 1, generator=generator) for _ in range(3))
    with torch.no_grad():
        assert abs(mutual_information_bound(network, a, b, c).item()) < 0.05


def test_stacked_networks_estimate_each_pair_apart():
    """Group 0 sees correlated pairs, group 1 independent ones: only group 0's bound rises."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(2)
    network = StatisticsNetworks(2, 1, 1, hidden=64)
    trainer = MineTrainer(network, lr=1e-3)

    def pairs(count: int):
        x, y = correlated(count, 0.5, generator)
        independent = torch.randn(1, count, 1, generator=generator)
        return torch.cat([x, x]), torch.cat([y, independent])

    for _ in range(800):
        x, y = pairs(256)
        trainer.step(x, y, torch.randn(2, 256, 1, generator=generator))
    x, y = pairs(20000)
    with torch.no_grad():
        bound = mutual_information_bound(
            network, x, y, torch.randn(2, 20000, 1, generator=generator)
        )
    assert bound.shape == (2,) and bound[0] > 0.5 and abs(bound[1]) < 0.05
