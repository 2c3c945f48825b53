"""Supervised training and inference shared by attacks (training backdoored models) and defenses
(fine-tuning). State is checkpointed every epoch so `--resume` continues an interrupted run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plugins.atomic import atomic_write
from plugins.data.imageset import ImageSet
from plugins.data.tensors import batch_slices, random_crop_flip, shuffled_batches, to_tensor
from plugins.plugin_types import RunContext


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    batch_size: int = 128
    weight_decay: float = 5e-4
    momentum: float = 0.9
    augment: bool = True


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


def save_state(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def fit(
    model: nn.Module, data: ImageSet, settings: TrainSettings, context: RunContext, name: str
) -> nn.Module:
    """SGD with momentum and cosine annealing, cross-entropy, crop+flip augmentation."""
    device = context.device
    model.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs)
    generator = context.generator(offset=1)
    state_path = context.workdir / f"{name}.state.pt" if context.workdir else None
    start = 0
    if context.resume and state_path and (state := load_state(state_path)):
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        start = state["epoch"]
        context.log(f"{name}: resuming after epoch {start}/{settings.epochs}")
    images = to_tensor(data.images)
    labels = torch.from_numpy(data.labels)
    steps = -(-len(data) // settings.batch_size)
    bar = context.progress(total=(settings.epochs - start) * steps, desc=name, unit="step")
    for epoch in range(start, settings.epochs):
        model.train()
        total_loss = 0.0
        for index in shuffled_batches(len(data), settings.batch_size, generator):
            batch = images[index]
            if settings.augment:
                batch = random_crop_flip(batch, generator)
            loss = F.cross_entropy(model(batch.to(device)), labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            bar.update()
        scheduler.step()
        bar.set_postfix(epoch=epoch + 1, loss=f"{total_loss / steps:.3f}")
        if state_path:
            save_state(
                state_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "epoch": epoch + 1,
                },
            )
    bar.close()
    return model.eval()
