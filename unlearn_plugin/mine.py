"""MINE (Belghazi et al., ICML 2018): a statistics network T(z, t) whose Donsker-Varadhan bound
I(z; t) >= E_joint[T] - log E_marginal[exp T] estimates mutual information. BAERASER maximises
I(z; G(z)) as the entropy term that keeps generated triggers diverse (the MESA recipe its authors'
code follows: a joint linear layer on z and t, two more layers, leaky ReLUs)."""

from __future__ import annotations

import math

import torch
from torch import nn


class StatisticsNetwork(nn.Module):
    def __init__(self, noise_size: int, trigger_size: int, hidden: int) -> None:
        super().__init__()
        self.from_noise = nn.Linear(noise_size, hidden, bias=False)
        self.from_trigger = nn.Linear(trigger_size, hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.head = nn.Sequential(
            nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )

    def forward(self, noise: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
        joint = self.from_noise(noise) + self.from_trigger(trigger.flatten(1)) + self.bias
        return self.head(joint).squeeze(1)


def mutual_information_bound(
    network: StatisticsNetwork, noise: torch.Tensor, trigger: torch.Tensor,
    marginal_noise: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """Donsker-Varadhan: mean T(z, t) - log mean exp T(z', t), z' drawn independently of t."""
    joint = network(noise, trigger).mean()
    marginal = network(marginal_noise, trigger)
    return joint - (torch.logsumexp(marginal, 0) - math.log(len(marginal)))


class MineTrainer:
    """Ascends the bound with MINE's bias-corrected gradient: the denominator of the log term's
    gradient is a moving average of E[exp T] (rate 0.01) instead of the batch estimate."""

    def __init__(self, network: StatisticsNetwork, lr: float, rate: float = 0.01) -> None:
        self.network = network
        self.optimizer = torch.optim.Adam(network.parameters(), lr=lr, betas=(0.5, 0.999))
        self.rate = rate
        self.moving: float | None = None

    def step(
        self, noise: torch.Tensor, trigger: torch.Tensor, marginal_noise: torch.Tensor
    ) -> float:
        joint = self.network(noise, trigger).mean()
        exp_marginal = self.network(marginal_noise, trigger).exp().mean()
        value = exp_marginal.item()
        self.moving = (
            value if self.moving is None else (1 - self.rate) * self.moving + self.rate * value
        )
        loss = -(joint - exp_marginal / self.moving)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return (joint - math.log(max(value, 1e-12))).item()
