"""C&C step 3's rank choice for a `--compression` target in parameters of the whole model. The
paper's rule could not be read (docs/compact.md), so two are offered:
- `energy` (default): each mode of each layer keeps the fewest leading ranks whose squared singular
  values reach one energy fraction e, shared by every layer; the largest e that meets the target
  wins. The stem (the first convolution, reading the image's colour channels) stays dense. This
  is the usual rank rule of low-rank compression (Kim et al. 2016 use VBMF instead).
- `uniform`: one keep fraction for every layer (R1 = keep * C_out, R2 = keep * C_in).
Under both, a layer whose three convolutions would not be smaller than the original stays dense."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from purify_backdoor import PurifyError
from purify_backdoor.compact.tucker import unfold

RULES = ("energy", "uniform")


def decomposable_convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.groups == 1
    }


def tucker_parameters(conv: nn.Conv2d, out_rank: int, in_rank: int) -> int:
    kernel = conv.kernel_size[0] * conv.kernel_size[1]
    bias = conv.out_channels if conv.bias is not None else 0
    return (
        conv.in_channels * in_rank
        + out_rank * in_rank * kernel
        + conv.out_channels * out_rank
        + bias
    )


def dense_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def parameters_with(model: nn.Module, ranks: dict[str, tuple[int, int]]) -> int:
    convs = decomposable_convs(model)
    total = dense_parameters(model)
    for name, (out_rank, in_rank) in ranks.items():
        total += tucker_parameters(convs[name], out_rank, in_rank) - dense_parameters(convs[name])
    return total


def uniform_ranks(model: nn.Module) -> Callable[[float], dict[str, tuple[int, int]]]:
    """Ranks as a function of the keep fraction."""
    convs = decomposable_convs(model)
    return lambda keep: _smaller_only(
        convs,
        {
            name: (max(1, round(keep * conv.out_channels)), max(1, round(keep * conv.in_channels)))
            for name, conv in convs.items()
        },
    )


def energy_ranks(model: nn.Module) -> Callable[[float], dict[str, tuple[int, int]]]:
    """Ranks as a function of the energy fraction kept in each mode; the stem stays dense."""
    convs = decomposable_convs(model)
    spectra = {
        name: [_energy_profile(conv.weight, mode) for mode in (0, 1)]
        for name, conv in list(convs.items())[1:]
    }

    def ranks(energy: float) -> dict[str, tuple[int, int]]:
        return _smaller_only(
            convs,
            {
                name: tuple(int((profile < energy).sum()) + 1 for profile in profiles)
                for name, profiles in spectra.items()
            },
        )

    return ranks


def choose_ranks(
    model: nn.Module, compression: float, rule: str = "energy"
) -> dict[str, tuple[int, int]]:
    """The ranks at the largest keep fraction or energy (bisection) that reach `compression`."""
    if compression <= 1:
        return {}
    ranks_at = energy_ranks(model) if rule == "energy" else uniform_ranks(model)
    total = dense_parameters(model)
    best = total / parameters_with(model, ranks_at(0.0))
    if best < compression:
        raise PurifyError(
            f"--compression {compression:g}x is out of reach for this model with the {rule} rank "
            f"rule (at most {best:.2f}x); choose a smaller target"
        )
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if total / parameters_with(model, ranks_at(middle)) >= compression:
            low = middle
        else:
            high = middle
    return ranks_at(low)


def _energy_profile(weight: torch.Tensor, mode: int) -> torch.Tensor:
    """Cumulative share of squared singular values of the mode-`mode` unfolding, before each rank:
    the rank needed for energy e is the number of entries below e, plus one."""
    energy = torch.linalg.svdvals(unfold(weight.detach().double(), mode)) ** 2
    return torch.cumsum(energy, 0)[:-1] / energy.sum()


def _smaller_only(
    convs: dict[str, nn.Conv2d], ranks: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    return {
        name: pair
        for name, pair in ranks.items()
        if tucker_parameters(convs[name], *pair) < dense_parameters(convs[name])
    }
