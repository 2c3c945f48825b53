"""C&C step 3's rank choice: one keep fraction for every decomposed layer (R1 = keep * C_out,
R2 = keep * C_in), the largest that reaches the `--compression` target in parameters of the whole
model. Layers whose three convolutions would not be smaller than the original stay dense."""

from __future__ import annotations

from torch import nn

from plugins.errors import PurifyError


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


def ranks_at(model: nn.Module, keep: float) -> dict[str, tuple[int, int]]:
    ranks = {}
    for name, conv in decomposable_convs(model).items():
        out_rank = max(1, round(keep * conv.out_channels))
        in_rank = max(1, round(keep * conv.in_channels))
        dense = sum(parameter.numel() for parameter in conv.parameters())
        if tucker_parameters(conv, out_rank, in_rank) < dense:
            ranks[name] = (out_rank, in_rank)
    return ranks


def parameters_with(model: nn.Module, ranks: dict[str, tuple[int, int]]) -> int:
    convs = decomposable_convs(model)
    total = sum(parameter.numel() for parameter in model.parameters())
    for name, (out_rank, in_rank) in ranks.items():
        dense = sum(parameter.numel() for parameter in convs[name].parameters())
        total += tucker_parameters(convs[name], out_rank, in_rank) - dense
    return total


def choose_ranks(model: nn.Module, compression: float) -> dict[str, tuple[int, int]]:
    """The largest keep fraction (bisection) whose parameter ratio reaches `compression`."""
    if compression <= 1:
        return {}
    total = sum(parameter.numel() for parameter in model.parameters())
    best = total / parameters_with(model, ranks_at(model, 1e-6))
    if best < compression:
        raise PurifyError(
            f"--compression {compression:g}x is out of reach for this model (at most {best:.2f}x "
            f"with rank 1 everywhere); choose a smaller target"
        )
    low, high = 0.0, 1.0
    for _ in range(40):
        keep = (low + high) / 2
        if total / parameters_with(model, ranks_at(model, keep)) >= compression:
            low = keep
        else:
            high = keep
    return ranks_at(model, low)
