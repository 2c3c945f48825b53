"""The cloning loss (MEDIC eq. 1)."""

from __future__ import annotations

import torch


class _WeightedSquaredError(torch.autograd.Function):
    """mean_b sum_i s_i (c_i - t_i)^2 with constant s and t, and its gradient 2 s (c - t) / B,
    in four passes over the tensors instead of autograd's eight: this loss runs on every hooked
    layer of every step."""

    @staticmethod
    def forward(ctx, teacher: torch.Tensor, clone: torch.Tensor, scale: torch.Tensor):
        difference = clone - teacher
        scaled = scale * difference
        ctx.save_for_backward(scaled)
        ctx.batch = clone.shape[0]
        return torch.vdot(scaled.flatten(), difference.flatten()) / ctx.batch

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (scaled,) = ctx.saved_tensors
        return None, scaled * (2 * grad_output / ctx.batch), None


def layer_clone_loss(
    teacher: torch.Tensor, clone: torch.Tensor, weights: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of sum over neurons of w_i * ((f*_i - f^c_i) / sigma_c)^2; dividing by
    the teacher's sigma is the reference's `--norml2`. Teacher values and weights are constants."""
    scale = (weights / sigma.square()).expand_as(clone).detach()
    return _WeightedSquaredError.apply(teacher.detach(), clone, scale)
