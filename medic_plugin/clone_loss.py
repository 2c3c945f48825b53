"""The cloning loss (MEDIC eq. 1)."""

from __future__ import annotations

import torch


def layer_clone_loss(
    teacher: torch.Tensor, clone: torch.Tensor, weights: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of sum over neurons of w_i * ((f*_i - f^c_i) / sigma_c)^2; dividing by
    the teacher's sigma is the reference's `--norml2`."""
    squared = ((teacher - clone) / sigma).square()
    return (weights * squared).flatten(1).sum(1).mean()
