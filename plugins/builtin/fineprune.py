"""Fine-Pruning (Liu et al., RAID 2018): channels of the last convolutional layer that stay quiet
on clean data are where a backdoor can hide. They are pruned in increasing order of mean activation
on held-out clean images until clean accuracy there drops by more than `max_drop` (the paper's
stopping rule), then the model is fine-tuned with those channels kept at zero.

The last conv layer's channels reach the classifier only through global average pooling, so a
channel is pruned by zeroing its column of the final linear layer (exactly equivalent, and it
survives saving in any checkpoint format); its gradient is masked during fine-tuning."""

from __future__ import annotations

import copy

import torch
from torch import nn

from purify_backdoor import (
    Defense,
    DefenseJob,
    ImageSet,
    Option,
    PurifyError,
    TrainSettings,
    above,
    at_least,
    batch_slices,
    between,
    fit,
    hookimpl,
    to_tensor,
    unwrap,
)


def classifier(model: nn.Module) -> nn.Linear:
    layers = [module for module in unwrap(model).modules() if isinstance(module, nn.Linear)]
    if not layers:
        raise PurifyError("fineprune needs a model whose last layer is nn.Linear")
    return layers[-1]


@torch.no_grad()
def classifier_inputs(model: nn.Module, data: ImageSet, device: torch.device) -> torch.Tensor:
    """The pooled last-layer features each image feeds the classifier (what gets pruned)."""
    fc, captured = classifier(model), []
    handle = fc.register_forward_pre_hook(lambda _, args: captured.append(args[0].cpu()))
    model.eval()
    images = to_tensor(data.images)
    for part in batch_slices(len(images), 500):
        model(images[part].to(device))
    handle.remove()
    return torch.cat(captured)


@torch.no_grad()
def prune_quiet_channels(
    fc: nn.Linear, features: torch.Tensor, labels: torch.Tensor, max_drop: float, max_ratio: float
) -> list[int]:
    """Prune in increasing mean activation while held-out accuracy stays within `max_drop`."""
    weight, bias = fc.weight.detach().cpu(), fc.bias.detach().cpu()

    def accuracy(mask: torch.Tensor) -> float:
        return float(((features * mask) @ weight.T + bias).argmax(1).eq(labels).float().mean())

    mask = torch.ones(features.shape[1])
    baseline = accuracy(mask)
    pruned = []
    for channel in features.mean(0).argsort()[: int(max_ratio * len(mask))].tolist():
        mask[channel] = 0
        if baseline - accuracy(mask) > max_drop:
            break
        pruned.append(channel)
    fc.weight[:, pruned] = 0
    return pruned


def run(job: DefenseJob) -> nn.Module:
    options = job.options
    model = copy.deepcopy(job.model).to(job.context.device)
    order = torch.randperm(len(job.clean), generator=job.context.generator(offset=30)).numpy()
    cut = int(len(order) * (1 - options["holdout"]))
    train, held = job.clean.subset(order[:cut]), job.clean.subset(order[cut:])
    fc = classifier(model)
    features = classifier_inputs(model, held, job.context.device)
    pruned = prune_quiet_channels(
        fc, features, torch.from_numpy(held.labels), options["max_drop"], options["max_ratio"]
    )
    keep = torch.ones_like(fc.weight)
    keep[:, pruned] = 0
    handle = fc.weight.register_hook(lambda gradient: gradient * keep)
    settings = TrainSettings(epochs=options["epochs"], lr=options["lr"], batch_size=64)
    fit(model, train, settings, job.context, name="fineprune")
    handle.remove()
    job.details["fineprune"] = {"pruned": len(pruned), "channels": features.shape[1]}
    return model


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="fineprune",
            description="Fine-Pruning (RAID 2018): prune quiet last-layer channels, fine-tune",
            run=run,
            options=(
                Option(
                    "max_drop",
                    float,
                    0.05,
                    "stop pruning when held-out accuracy drops more",
                    bounds=between(0, 1),
                ),
                Option(
                    "max_ratio",
                    float,
                    0.9,
                    "prune at most this fraction of the channels",
                    bounds=between(0, 1),
                ),
                Option(
                    "holdout",
                    float,
                    0.2,
                    "fraction of the clean data used to decide pruning",
                    bounds=between(0, 1, min_open=True, max_open=True),
                ),
                Option("epochs", int, 10, "fine-tuning epochs after pruning", bounds=at_least(1)),
                Option(
                    "lr",
                    float,
                    0.01,
                    "fine-tuning learning rate (cosine-annealed)",
                    bounds=above(0),
                ),
            ),
        )
    )
