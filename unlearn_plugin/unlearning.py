"""BAERASER step 2: unlearn the recovered triggers by gradient ascent. Per batch the loss is

    CE(f(x), y) - alpha * CE(f(x + t), y_t) + beta * sum_i F_i (theta_i - theta0_i)^2

with t a fresh trigger from the pool and y_t its label. The first term keeps clean inputs right.
The second ascends the loss of the backdoor (per sample, up to chance level). The third is the
penalty on parameters drifting from the original where that hurts clean inputs: F is the diagonal
Fisher information of the clean loss at the original parameters, scaled to a maximum of 1. The issue
calls it the paper's dynamic penalty, with beta / alpha around 100; the paper's text could not be
read here and the authors' released code has only a static L1 drift term (lambda 1e-6), so this
weighting is our reading.

The authors' code stops when the ASR of the REAL trigger on test data falls below 0.05%, which a
defender cannot measure; here training stops when every recovered trigger's success on held-out
clean images is below `stop_success` and no higher than what the scan's triggers for the labels
reach in its form (the median its pool rule measured): a trigger that still beats the typical
innocent label of its form is not unlearned yet, even when its success looks small."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor import EpochCheckpoint, RunContext, batch_slices, check_finite_loss
from purify_backdoor.unlearn.generator import TriggerGenerator, apply_trigger
from purify_backdoor.unlearn.recovery import RecoverySettings, sample_triggers, trigger_success


@dataclass(frozen=True)
class UnlearnSettings:
    alpha: float = 1.0
    beta: float = 100.0
    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 128
    stop_success: float = 0.05
    check_every: int = 10


def fisher_diagonal(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> list[torch.Tensor]:
    """Mean squared gradient of the clean loss per parameter, divided by its largest value: with
    weights in [0, 1], the penalty's step size stays below lr * 2 * beta (a mean-1 scaling let a
    few high-Fisher weights diverge)."""
    squares = [torch.zeros_like(parameter) for parameter in model.parameters()]
    model.eval()
    for part in batch_slices(len(images), 64):
        loss = F.cross_entropy(model(images[part].to(device)), labels[part].to(device))
        gradients = torch.autograd.grad(loss, list(model.parameters()))
        for square, gradient in zip(squares, gradients, strict=True):
            square += gradient.square()
    largest = torch.cat([square.flatten() for square in squares]).max().clamp(min=1e-20)
    return [square / largest for square in squares]


def drift_penalty(
    model: nn.Module, original: list[torch.Tensor], weights: list[torch.Tensor]
) -> torch.Tensor:
    """sum_i F_i (theta_i - theta0_i)^2: zero at the original parameters."""
    return sum(
        (weight * (parameter - start).square()).sum()
        for parameter, start, weight in zip(model.parameters(), original, weights, strict=True)
    )


def bounded_ascent_term(logits: torch.Tensor, label: int) -> torch.Tensor:
    """Per-sample CE towards the trigger's label, capped at log K (chance): a sample whose target
    probability is already below chance stops pushing, so the ascent cannot run off to infinity
    (the authors' code relies on its oracle early stop instead)."""
    losses = F.cross_entropy(
        logits, torch.full((len(logits),), label, device=logits.device), reduction="none"
    )
    return losses.clamp(max=math.log(logits.shape[1])).mean()


def unlearn(
    model: nn.Module, pool: dict[int, list[TriggerGenerator]],
    clean: tuple[torch.Tensor, torch.Tensor], held_out: tuple[torch.Tensor, torch.Tensor],
    recovery: RecoverySettings, settings: UnlearnSettings, context: RunContext,
    typical: Mapping[str, float] | None = None,
) -> tuple[nn.Module, list[dict[str, float]]]:  # fmt: skip
    """The unlearned copy of `model` and its progress (step, loss, recovered-trigger success).
    `typical` is each form's median success over the scanned labels (none: stop at
    `stop_success` alone)."""
    typical = typical or {}
    device = context.device
    student = copy.deepcopy(model).to(device)
    images, labels = clean
    original = [parameter.detach().clone() for parameter in student.parameters()]
    weights = fisher_diagonal(student, images, labels, device)
    optimizer = torch.optim.SGD(student.parameters(), lr=settings.lr, momentum=0.9)
    constant = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    generator = context.generator(offset=21)
    targets = sorted(pool)
    path = context.workdir / "baeraser.state.pt" if context.workdir else None
    checkpoint = EpochCheckpoint(path, student, optimizer, constant, generator)
    state = checkpoint.resume(context, settings.steps)
    start = state["epoch"] if state else 0  # here: steps done, saved at every check
    history = list(state["history"]) if state else []
    # BatchNorm statistics stay those of the original model (the authors' loop runs in eval mode
    # from its second batch on).
    student.eval()
    bar = context.progress(total=settings.steps - start, desc="baeraser unlearn", unit="step")
    for step in range(start, settings.steps):
        if step % settings.check_every == 0:
            if step > start:
                checkpoint.save(step, history=history)
            rates = [
                (trigger_success(student, net, *held_out, label, recovery, context), net.form)
                for label in targets
                for net in pool[label]
            ]
            history.append(
                {"step": step, "recovered_trigger_success": max(rate for rate, _ in rates)}
            )
            if all(
                rate < settings.stop_success and rate <= typical.get(form, math.inf)
                for rate, form in rates
            ):
                break
        index = torch.randint(0, len(images), (settings.batch_size,), generator=generator)
        batch, truth = images[index].to(device), labels[index].to(device)
        label = targets[step % len(targets)]
        net = pool[label][(step // len(targets)) % len(pool[label])]
        triggers = sample_triggers(net, len(batch), generator, device)
        places = net.places(len(batch), generator)
        stamped = apply_trigger(batch, triggers, net.form, recovery.additive_eps / 255, places)
        backdoor = bounded_ascent_term(student(stamped), label)
        loss = (
            F.cross_entropy(student(batch), truth)
            - settings.alpha * backdoor
            + settings.beta * drift_penalty(student, original, weights)
        )
        check_finite_loss(loss, "baeraser", 0, step, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history[-1]["loss"] = loss.item()
        bar.update()
    bar.close()
    return student.eval(), history
