"""MEDIC's training loop (section 3 and appendix B): a clone of the same architecture, trained from
a fresh initialisation on the clean subset, with the trojaned model as a frozen teacher whose
important neurons it copies and whose backdoor neurons it has no reason to learn."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from purify_backdoor import (
    DefenseJob,
    EpochCheckpoint,
    ImageSet,
    PurifyError,
    accuracy,
    check_finite_loss,
    random_crop_flip,
    random_rotate,
    shuffled_batches,
    to_tensor,
)
from purify_backdoor.medic.clone_loss import layer_clone_loss
from purify_backdoor.medic.illustration import illustrate
from purify_backdoor.medic.importance import (
    activation_criterion,
    conjunction,
    impact_criterion,
    uniform_importance,
)
from purify_backdoor.medic.layers import (
    ActivationRecorder,
    called_once,
    channel_axis,
    cloned_layers,
)
from purify_backdoor.medic.reinit import fresh_clone
from purify_backdoor.medic.statistics import teacher_statistics


@dataclass(frozen=True)
class MedicSettings:
    tau: float = 5.0
    hook_weight: float = 10.0
    epochs: int = 60
    lr: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int = 64
    rotation: float = 3.0
    hook_layers: str = "conv+bn"
    importance: str = "reference"
    holdout: float = 0.0


def teacher_weights(
    teacher: nn.Module,
    recorder: ActivationRecorder,
    batch: torch.Tensor,
    labels: torch.Tensor,
    stats: list[tuple[torch.Tensor, torch.Tensor]],
    settings: MedicSettings,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The teacher's activations and their importance weights for one batch, both detached. The
    impact criterion needs dCE/df* on the true labels: one backward through the frozen teacher that
    computes activation gradients only (its parameters do not require grad). The CE is the batch
    mean, as in the reference, so tau keeps the reference's meaning at its batch size of 64."""
    if settings.importance == "none" or settings.tau == 0:
        with torch.no_grad(), record_function("medic.teacher_forward"):
            teacher(batch)
        activations = recorder.take()
        return activations, [uniform_importance(a) for a in activations]
    with record_function("medic.teacher_forward"):
        logits = teacher(batch.requires_grad_(True))
    activations = recorder.take()
    with record_function("medic.teacher_backward"):
        gradients = torch.autograd.grad(F.cross_entropy(logits, labels), activations)
    signed = settings.importance == "reference"
    weights = []
    with torch.no_grad(), record_function("medic.importance"):
        for activation, gradient, (mu, sigma) in zip(activations, gradients, stats, strict=True):
            act = activation_criterion(activation, mu, sigma, settings.tau, signed)
            imp = impact_criterion(gradient, sigma, settings.tau, signed)
            weights.append(conjunction(act, imp))
    return [a.detach() for a in activations], weights


def clone_losses(
    teacher: nn.Module,
    clone: nn.Module,
    hooks: tuple[ActivationRecorder, ActivationRecorder],
    batch: torch.Tensor,
    target: torch.Tensor,
    stats: list[tuple[torch.Tensor, torch.Tensor]],
    settings: MedicSettings,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch: the clone's logits, its cross-entropy and L_clone (eq. 1 summed over layers).
    Its parts are labelled `medic.*` for torch.profiler (benchmarks/medic_step_time.py)."""
    teacher_hooks, clone_hooks = hooks
    activations, weights = teacher_weights(teacher, teacher_hooks, batch, target, stats, settings)
    with record_function("medic.clone_forward"):
        logits = clone(batch.detach())
    pairs = zip(activations, clone_hooks.take(), weights, stats, strict=True)
    with record_function("medic.clone_loss"):
        cloning = sum(layer_clone_loss(t, c, w, sigma) for t, c, w, (_, sigma) in pairs)
    return logits, F.cross_entropy(logits, target), cloning


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, rotation: float
) -> torch.Tensor:
    batch = random_crop_flip(images, generator)
    return random_rotate(batch, generator, rotation) if rotation else batch


def _split_holdout(
    clean: ImageSet, fraction: float, generator: torch.Generator
) -> tuple[ImageSet, ImageSet | None]:
    if fraction <= 0:
        return clean, None
    order = torch.randperm(len(clean), generator=generator).numpy()
    cut = max(1, round(fraction * len(clean)))
    return clean.subset(order[cut:]), clean.subset(order[:cut])


def clone_model(job: DefenseJob, settings: MedicSettings) -> nn.Module:
    context, device = job.context, job.context.device
    teacher = job.model.to(device).eval()
    frozen = [p.requires_grad for p in teacher.parameters()]
    teacher.requires_grad_(False)
    generator = context.generator(offset=11)
    train, held_out = _split_holdout(job.clean, settings.holdout, generator)
    clone = fresh_clone(teacher, job.arch).to(device)
    clone.requires_grad_(True)
    images = to_tensor(train.images)
    labels = torch.from_numpy(train.labels)
    example = images[: settings.batch_size].to(device)
    layers = called_once(teacher, cloned_layers(teacher, settings.hook_layers), example)
    if not layers:
        raise PurifyError(f"the model has no {settings.hook_layers} layers for MEDIC to clone")
    axes = [channel_axis(module) for _, module in layers]
    teacher_hooks = ActivationRecorder([module for _, module in layers])
    clone_modules = dict(clone.named_modules())
    clone_hooks = ActivationRecorder([clone_modules[name] for name, _ in layers])
    teacher_hooks.calibrate(teacher, example)
    clone_hooks.calibrate(clone, example)
    optimizer = torch.optim.Adam(
        clone.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs)
    path = context.workdir / "medic.state.pt" if context.workdir else None
    checkpoint = EpochCheckpoint(path, clone, optimizer, scheduler, generator)
    state = checkpoint.resume(context, settings.epochs)
    start = state["epoch"] if state else 0
    if state:
        stats = [(mu.to(device), sigma.to(device)) for mu, sigma in state["stats"]]
    else:
        batches = (
            augment_batch(images[index], generator, settings.rotation).to(device)
            for index in shuffled_batches(len(train), settings.batch_size, generator)
        )
        stats = teacher_statistics(teacher, teacher_hooks, batches, axes)

    steps = math.ceil(len(train) / settings.batch_size)
    bar = context.progress(total=(settings.epochs - start) * steps, desc="medic", unit="step")
    history = []
    for epoch in range(start, settings.epochs):
        clone.train()
        sums = {"ce": 0.0, "clone": 0.0, "correct": 0}
        for step, index in enumerate(shuffled_batches(len(train), settings.batch_size, generator)):
            batch = augment_batch(images[index], generator, settings.rotation).to(device)
            target = labels[index].to(device)
            logits, ce, cloning = clone_losses(
                teacher, clone, (teacher_hooks, clone_hooks), batch, target, stats, settings
            )
            loss = ce + settings.hook_weight * cloning
            check_finite_loss(loss, "medic", epoch, step, checkpoint.path)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums["ce"] += ce.item()
            sums["clone"] += cloning.item()
            sums["correct"] += int((logits.argmax(1) == target).sum())
            bar.update()
        scheduler.step()
        record = {
            "epoch": epoch + 1,
            "ce": sums["ce"] / steps,
            "clone_loss": sums["clone"] / steps,
            "train_acc": sums["correct"] / len(train),
        }
        if held_out is not None:
            record["held_out_acc"] = accuracy(clone, held_out, device)
        history.append(record)
        context.log(
            "medic epoch {epoch}/{total}: ce {ce:.3f}  clone {clone_loss:.4f}  train acc "
            "{train_acc:.1%}".format(total=settings.epochs, **record)
            + (f"  held-out acc {record['held_out_acc']:.1%}" if held_out is not None else "")
        )
        checkpoint.save(epoch + 1, stats=[(mu.cpu(), sigma.cpu()) for mu, sigma in stats])
    bar.close()
    teacher_hooks.remove()
    clone_hooks.remove()
    for parameter, flag in zip(teacher.parameters(), frozen, strict=True):
        parameter.requires_grad_(flag)
    job.details["medic"] = {"hooked_layers": [name for name, _ in layers], "history": history}
    job.illustrate = illustrate(
        teacher,
        layers,
        axes,
        stats,
        lambda model, recorder, batch, target: teacher_weights(
            model, recorder, batch, target, stats, settings
        ),
        device,
    )
    return clone.eval()
