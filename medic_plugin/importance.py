"""Neuron importance (MEDIC section 3.2). Every element of a layer's output is a neuron; weights are
per sample and per layer, normalised by a softmax over all C*H*W neurons of that layer. tau >= 0,
so tau * |z| = |tau * z|.

`signed=True` feeds the signed values to the softmax, as the reference code does (`hook.py`,
`get_importance_2`); `signed=False` uses magnitudes, as the paper writes them."""

from __future__ import annotations

import torch


def neuron_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over all non-batch dimensions."""
    return torch.softmax(scores.flatten(1), dim=1).view_as(scores)


def activation_criterion(
    activation: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, tau: float, signed: bool
) -> torch.Tensor:
    """Eq. 2: softmax of tau * (f*(x) - mu) / sigma (tau / sigma is per channel: one pass)."""
    scores = (activation - mu) * (tau / sigma)
    return neuron_softmax(scores if signed else scores.abs())


def impact_criterion(
    gradient: torch.Tensor, sigma: torch.Tensor, tau: float, signed: bool
) -> torch.Tensor:
    """Eq. 3: softmax of tau * sigma * dCE/df* (the gradient w.r.t. the standardized value)."""
    scores = gradient * (tau * sigma)
    return neuron_softmax(scores if signed else scores.abs())


def conjunction(activation_weights: torch.Tensor, impact_weights: torch.Tensor) -> torch.Tensor:
    """Eq. 4: w = sqrt(w_act * w_imp)."""
    return torch.sqrt(activation_weights * impact_weights)


def uniform_importance(activation: torch.Tensor) -> torch.Tensor:
    """Plain cloning: what eqs. 2-4 give at tau = 0, every neuron weighted 1/(C*H*W)."""
    return torch.full_like(activation, 1.0 / activation[0].numel())
