import pytest
import torch

from purify_backdoor.medic.clone_loss import layer_clone_loss


def test_eq1_by_hand():
    teacher = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])
    clone = torch.tensor([[[[0.0, 2.0]], [[3.0, 2.0]]], [[[1.0, 1.0]], [[1.0, 1.0]]]])
    weights = torch.tensor([[[[0.5, 0.1]], [[0.2, 0.2]]], [[[0.25, 0.25]], [[0.25, 0.25]]]])
    sigma = torch.tensor([2.0, 1.0]).view(1, 2, 1, 1)
    # sample 0: 0.5*(1/2)^2 + 0.1*0 + 0.2*0 + 0.2*(2/1)^2 = 0.125 + 0.8 = 0.925
    # sample 1: 0.25*(1/2)^2 * 2 + 0.25*1 * 2 = 0.125 + 0.5 = 0.625
    expected = (0.925 + 0.625) / 2
    assert layer_clone_loss(teacher, clone, weights, sigma).item() == pytest.approx(expected)


def test_identical_activations_cost_nothing_and_gradient_flows_to_the_clone():
    teacher = torch.randn(2, 3, 4, 4)
    clone = teacher.clone().requires_grad_(True)
    weights = torch.rand(2, 3, 4, 4)
    loss = layer_clone_loss(teacher, clone, weights, torch.ones(1, 3, 1, 1))
    assert loss.item() == 0.0
    (layer_clone_loss(teacher, clone + 1, weights, torch.ones(1, 3, 1, 1))).backward()
    assert clone.grad.abs().sum() > 0


def test_fused_gradient_matches_autograd():
    torch.manual_seed(0)
    teacher = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    clone = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    sigma = torch.rand(1, 2, 1, 1, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda c: layer_clone_loss(teacher, c, weights, sigma), clone)
    plain = (weights * ((teacher - clone) / sigma).square()).flatten(1).sum(1).mean()
    fused = layer_clone_loss(teacher, clone, weights, sigma)
    assert torch.allclose(plain, fused)
    (grad_plain,) = torch.autograd.grad(plain, clone)
    (grad_fused,) = torch.autograd.grad(fused, clone)
    assert torch.allclose(grad_plain, grad_fused)
