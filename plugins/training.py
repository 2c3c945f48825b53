"""Supervised training and inference shared by attacks (training backdoored models) and defenses
(fine-tuning). State is checkpointed every epoch so `--resume` continues an interrupted run."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor.atomic import atomic_write
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.data.tensors import batch_slices, random_crop_flip, shuffled_batches, to_tensor
from purify_backdoor.errors import PurifyError
from purify_backdoor.plugin_types import RunContext

# Changes a training batch and its labels (a trigger stamped on, a label flipped): (images,
# labels, indices into the training set, the training RNG) -> (images, labels).
BatchHook = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    batch_size: int = 128
    weight_decay: float = 5e-4
    momentum: float = 0.9
    augment: bool = True
    # "cosine": cosine annealing per epoch. "onecycle": the learning rate rises linearly from 0
    # over `warmup_epochs`, then falls linearly to 0, per step (the triangular schedule of the
    # fast CIFAR-10 recipes, e.g. Jordan, arXiv 2404.00498).
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    nesterov: bool = False
    channels_last: bool = False  # NHWC tensors: about 1.5x faster convolutions on CPU


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 500
) -> torch.Tensor:
    """Logits (on CPU) of uint8 NHWC images, model in eval mode."""
    model.eval()
    outputs = [
        model(to_tensor(images[part]).to(device)).float().cpu()
        for part in batch_slices(len(images), batch_size)
    ]
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy(model: nn.Module, data: ImageSet, device: torch.device) -> float:
    logits = predict_logits(model, data.images, device)
    return float((logits.argmax(1).numpy() == data.labels).mean())


def cached(context: RunContext, name: str, compute: Callable[[], dict]) -> dict:
    """A step's result (a dict of tensors and plain values) saved in the run's work folder, and
    read back instead of recomputed under `--resume`: resumable work that is not epoch-shaped
    (synthetic data, one trained generator per label)."""
    path = context.workdir / f"{name}.pt" if context.workdir else None
    if context.resume and path is not None and path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    result = compute()
    if path is not None:
        atomic_write(path, lambda tmp: torch.save(result, tmp))
    return result


@dataclass
class EpochCheckpoint:
    """Everything an interrupted training needs to continue exactly as if it had not stopped:
    weights, optimizer, learning-rate schedule and the augmentation RNG, saved after every epoch
    into the run's work folder (nothing is saved without one)."""

    path: Path | None
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator

    def resume(self, context: RunContext, total_epochs: int) -> dict | None:
        """Under `--resume`, restore the last saved epoch and return its state (for `epoch` and
        any extras saved with it); otherwise None."""
        if not (context.resume and self.path and self.path.exists()):
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        name = self.path.name.split(".")[0]
        context.log(f"{name}: resuming after epoch {state['epoch']}/{total_epochs}")
        return state

    def save(self, epoch: int, **extra: object) -> None:
        if self.path is None:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "epoch": epoch,
            **extra,
        }
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """The model with gradients off for its parameters (inputs can still get gradients), restored
    afterwards: attacks and defenses that optimise inputs against a fixed network."""
    flags = [parameter.requires_grad for parameter in model.parameters()]
    model.requires_grad_(False)
    try:
        yield model
    finally:
        for parameter, flag in zip(model.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)


def workdir_for(out: Path) -> Path:
    """The folder of resumable state for the run that writes `out`."""
    return out.with_name(out.name + ".work")


def remove_workdir(workdir: Path | None) -> None:
    """Resumable state is only needed until the output is safely written."""
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def check_finite_loss(
    loss: torch.Tensor, name: str, epoch: int, step: int, saved: Path | None
) -> None:
    """Stop at the first NaN/Inf loss instead of training on garbage; per-epoch state up to the
    previous epoch stays in the work folder."""
    if torch.isfinite(loss):
        return
    kept = f"the state after epoch {epoch} is kept in {saved}" if saved and epoch else "nothing"
    raise PurifyError(
        f"{name}: the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; stopped "
        f"({kept}); lower the learning rate (-o lr=...) and run again"
    )


def fit(
    model: nn.Module,
    data: ImageSet,
    settings: TrainSettings,
    context: RunContext,
    name: str,
    batch_hook: BatchHook | None = None,
    hook_before_augment: bool = False,
    extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """SGD with momentum and cosine annealing, cross-entropy, crop+flip augmentation;
    `batch_hook` may change each batch after augmentation (or before, with `hook_before_augment`)
    and draws from the training RNG, so a resumed run poisons as the uninterrupted one would;
    `extra_loss(batch)`, called after the model's forward pass on it, adds to the loss (NAD)."""
    device = context.device
    model.to(device)
    memory_format = _memory_format(model, settings, data, device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        nesterov=settings.nesterov,
    )
    steps = -(-len(data) // settings.batch_size)
    scheduler = _scheduler(optimizer, settings, steps)
    per_step = settings.schedule == "onecycle"
    generator = context.generator(offset=1)
    path = context.workdir / f"{name}.state.pt" if context.workdir else None
    checkpoint = EpochCheckpoint(path, model, optimizer, scheduler, generator)
    state = checkpoint.resume(context, settings.epochs)
    start = state["epoch"] if state else 0
    images = to_tensor(data.images)
    labels = torch.from_numpy(data.labels)
    bar = context.progress(total=(settings.epochs - start) * steps, desc=name, unit="step")
    for epoch in range(start, settings.epochs):
        model.train()
        total_loss = 0.0
        for step, index in enumerate(shuffled_batches(len(data), settings.batch_size, generator)):
            batch, targets = images[index], labels[index]
            if batch_hook is not None and hook_before_augment:
                batch, targets = batch_hook(batch, targets, index, generator)
            if settings.augment:
                batch = random_crop_flip(batch, generator)
            if batch_hook is not None and not hook_before_augment:
                batch, targets = batch_hook(batch, targets, index, generator)
            batch = batch.to(device).contiguous(memory_format=memory_format)
            loss = F.cross_entropy(
                model(batch), targets.to(device), label_smoothing=settings.label_smoothing
            )
            if extra_loss is not None:
                loss = loss + extra_loss(batch)
            check_finite_loss(loss, name, epoch, step, checkpoint.path)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_step:
                scheduler.step()
            total_loss += loss.item()
            bar.update()
        if not per_step:
            scheduler.step()
        bar.set_postfix(epoch=epoch + 1, loss=f"{total_loss / steps:.3f}")
        checkpoint.save(epoch + 1)
    bar.close()
    return model.to(memory_format=torch.contiguous_format).eval()


def _scheduler(
    optimizer: torch.optim.Optimizer, settings: TrainSettings, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs)
    if settings.schedule != "onecycle":
        raise PurifyError(f"unknown schedule '{settings.schedule}'; use cosine or onecycle")
    total = settings.epochs * steps_per_epoch
    warmup = max(1, round(settings.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _memory_format(
    model: nn.Module, settings: TrainSettings, data: ImageSet, device: torch.device
) -> torch.memory_format:
    """channels_last when asked and the model takes it: a network that flattens NCHW maps with
    `.view` fails on NHWC tensors, so one forward pass decides, and the model stays NCHW."""
    if not settings.channels_last:
        return torch.contiguous_format
    sample = to_tensor(data.images[:2]).to(device).contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            model.eval()(sample)
    except RuntimeError:
        model.to(memory_format=torch.contiguous_format)
        return torch.contiguous_format
    return torch.channels_last
