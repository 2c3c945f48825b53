"""Eqs. 2-4 on tiny tensors, against sums written out by hand."""

import math

import pytest
import torch

from purify_backdoor.medic.importance import (
    activation_criterion,
    conjunction,
    impact_criterion,
    neuron_softmax,
    uniform_importance,
)

# One sample, 2 channels of 1x2 "pixels": 4 neurons.
ACT = torch.tensor([[[[1.0, 3.0]], [[0.0, -2.0]]]])
MU = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
SIGMA = torch.tensor([2.0, 1.0]).view(1, 2, 1, 1)
GRAD = torch.tensor([[[[0.5, -0.25]], [[1.0, 0.0]]]])


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_activation_criterion_signed_and_magnitude():
    tau = 2.0
    standardized = [(1 - 1) / 2, (3 - 1) / 2, (0 - 0) / 1, (-2 - 0) / 1]  # [0, 1, 0, -2]
    signed = activation_criterion(ACT, MU, SIGMA, tau, signed=True).flatten().tolist()
    assert signed == pytest.approx(softmax([tau * z for z in standardized]))
    magnitude = activation_criterion(ACT, MU, SIGMA, tau, signed=False).flatten().tolist()
    assert magnitude == pytest.approx(softmax([tau * abs(z) for z in standardized]))


def test_impact_criterion_scales_the_gradient_by_sigma():
    tau = 3.0
    scaled = [2 * 0.5, 2 * -0.25, 1 * 1.0, 1 * 0.0]
    signed = impact_criterion(GRAD, SIGMA, tau, signed=True).flatten().tolist()
    assert signed == pytest.approx(softmax([tau * s for s in scaled]))
    magnitude = impact_criterion(GRAD, SIGMA, tau, signed=False).flatten().tolist()
    assert magnitude == pytest.approx(softmax([tau * abs(s) for s in scaled]))


def test_conjunction_is_the_geometric_mean():
    a = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    b = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    expected = [math.sqrt(x * y) for x, y in zip(a[0].tolist(), b[0].tolist(), strict=True)]
    assert conjunction(a, b)[0].tolist() == pytest.approx(expected)


def test_tau_zero_gives_uniform_weights():
    act = activation_criterion(ACT, MU, SIGMA, 0.0, signed=True)
    imp = impact_criterion(GRAD, SIGMA, 0.0, signed=True)
    weights = conjunction(act, imp)
    assert torch.allclose(weights, torch.full_like(weights, 0.25))
    assert torch.allclose(weights, uniform_importance(ACT))


def test_softmax_is_per_sample_over_all_neurons():
    scores = torch.randn(3, 4, 5, 5)
    weights = neuron_softmax(scores)
    assert torch.allclose(weights.flatten(1).sum(1), torch.ones(3))
    assert torch.allclose(weights[1], neuron_softmax(scores[1:2])[0])
