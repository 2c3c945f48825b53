"""Tucker-2 decomposition of a convolution kernel over its two channel modes (C&C step 1), and the
layer that runs a truncated one as three convolutions: 1x1 (C_in -> R2), KxK core (R2 -> R1), 1x1
(R1 -> C_out), the layout of Kim et al. (ICLR 2016)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def unfold(tensor: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-n matricization: mode `mode` becomes the rows."""
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


@dataclass
class Tucker2:
    """W = G x1 U1 x2 U2: `core` G (R1 x R2 x K x K), `out_factor` U1 (C_out x R1),
    `in_factor` U2 (C_in x R2)."""

    core: torch.Tensor
    out_factor: torch.Tensor
    in_factor: torch.Tensor

    def reconstruct(self) -> torch.Tensor:
        return torch.einsum("rskl,or,is->oikl", self.core, self.out_factor, self.in_factor)

    def truncate(self, out_rank: int, in_rank: int) -> Tucker2:
        """Keep G(1:R1, 1:R2), U1(:, 1:R1), U2(:, 1:R2) (C&C step 3)."""
        return Tucker2(
            self.core[:out_rank, :in_rank].clone(),
            self.out_factor[:, :out_rank].clone(),
            self.in_factor[:, :in_rank].clone(),
        )


def hosvd(weight: torch.Tensor) -> Tucker2:
    """Full-rank HOSVD on the two channel modes: U_n are the left singular vectors of W_(n), in
    order of decreasing singular value, and G = W x1 U1^T x2 U2^T."""
    weight = weight.detach().double()
    out_factor = torch.linalg.svd(unfold(weight, 0), full_matrices=False).U
    in_factor = torch.linalg.svd(unfold(weight, 1), full_matrices=False).U
    core = torch.einsum("oikl,or,is->rskl", weight, out_factor, in_factor)
    return Tucker2(core, out_factor, in_factor)


class TuckerConv2d(nn.Module):
    """A convolution stored as its Tucker-2 factors; same input and output as the original."""

    def __init__(self, conv: nn.Conv2d, out_rank: int, in_rank: int) -> None:
        super().__init__()
        self.first = nn.Conv2d(conv.in_channels, in_rank, 1, bias=False)
        self.core = nn.Conv2d(
            in_rank, out_rank, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            bias=False, padding_mode=conv.padding_mode,
        )  # fmt: skip
        self.last = nn.Conv2d(out_rank, conv.out_channels, 1, bias=conv.bias is not None)

    @classmethod
    def from_decomposition(
        cls, conv: nn.Conv2d, decomposition: Tucker2
    ) -> TuckerConv2d:  # fmt: skip
        out_rank, in_rank = decomposition.core.shape[:2]
        layer = cls(conv, out_rank, in_rank)
        dtype = conv.weight.dtype
        with torch.no_grad():
            layer.first.weight.copy_(decomposition.in_factor.T[:, :, None, None].to(dtype))
            layer.core.weight.copy_(decomposition.core.to(dtype))
            layer.last.weight.copy_(decomposition.out_factor[:, :, None, None].to(dtype))
            if conv.bias is not None:
                layer.last.bias.copy_(conv.bias)
        return layer.to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.core(self.first(x)))

    def dense_weight(self) -> torch.Tensor:
        """The equivalent single KxK kernel (C_out x C_in x K x K)."""
        return Tucker2(
            self.core.weight, self.last.weight[:, :, 0, 0], self.first.weight[:, :, 0, 0].T
        ).reconstruct()

    @property
    def ranks(self) -> tuple[int, int]:
        return self.core.out_channels, self.core.in_channels
