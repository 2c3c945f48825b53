"""MINE (Belghazi et al., ICML 2018): a statistics network T(z, t) whose Donsker-Varadhan bound
I(z; t) >= E_joint[T] - log E_marginal[exp T] estimates mutual information. BAERASER maximises
I(z; G(z)) as the entropy term that keeps generated triggers diverse (the MESA recipe its authors'
code follows: a joint linear layer on z and t, two more layers, leaky ReLUs). One statistics
network per trigger generator, stacked like the generators: inputs (G, B, .), outputs (G, B)."""

from __future__ import annotations

import math

import torch
from torch import nn

from purify_backdoor.unlearn.generator import GroupedLinear


class StatisticsNetworks(nn.Module):
    def __init__(self, count: int, noise_size: int, trigger_size: int, hidden: int) -> None:
        super().__init__()
        self.from_noise = GroupedLinear(count, noise_size, hidden, bias=False)
        self.from_trigger = GroupedLinear(count, trigger_size, hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(count, 1, hidden))
        self.hidden = GroupedLinear(count, hidden, hidden)
        self.head = GroupedLinear(count, hidden, 1)

    def forward(self, noise: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
        joint = self.from_noise(noise) + self.from_trigger(trigger.flatten(2)) + self.bias
        hidden = self.hidden(nn.functional.leaky_relu(joint, 0.2))
        return self.head(nn.functional.leaky_relu(hidden, 0.2)).squeeze(2)


def mutual_information_bound(
    network: StatisticsNetworks, noise: torch.Tensor, trigger: torch.Tensor,
    marginal_noise: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """Donsker-Varadhan per group: mean T(z, t) - log mean exp T(z', t), z' drawn independently
    of t."""
    joint = network(noise, trigger).mean(1)
    marginal = network(marginal_noise, trigger)
    return joint - (torch.logsumexp(marginal, 1) - math.log(marginal.shape[1]))


class MineTrainer:
    """Ascends each group's bound with MINE's bias-corrected gradient: the denominator of the log
    term's gradient is a moving average of E[exp T] (rate 0.01) instead of the batch estimate."""

    def __init__(self, network: StatisticsNetworks, lr: float, rate: float = 0.01) -> None:
        self.network = network
        self.optimizer = torch.optim.Adam(network.parameters(), lr=lr, betas=(0.5, 0.999))
        self.rate = rate
        self.moving: torch.Tensor | None = None

    def step(
        self, noise: torch.Tensor, trigger: torch.Tensor, marginal_noise: torch.Tensor
    ) -> torch.Tensor:
        joint = self.network(noise, trigger).mean(1)
        exp_marginal = self.network(marginal_noise, trigger).exp().mean(1)
        value = exp_marginal.detach()
        self.moving = (
            value if self.moving is None else (1 - self.rate) * self.moving + self.rate * value
        )
        loss = -(joint - exp_marginal / self.moving).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return (joint - value.clamp(min=1e-12).log()).detach()
