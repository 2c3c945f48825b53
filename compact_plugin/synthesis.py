"""C&C steps 4-5: data-free inputs. ZeroQ-style synthesis (Cai et al., CVPR 2020) optimises random
images until the batch statistics at every BatchNorm's input match its running mean and variance,
plus a cross-entropy term towards sampled labels. Untargeted adversarial perturbations of those
images then serve as surrogate poisoned data: in a backdoored model they mostly land in the target
class."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor import RunContext, batch_slices, frozen, pgd_away_from_label


class BatchNormInputs:
    """Forward pre-hooks recording each BatchNorm's input (what its running statistics describe;
    ZeroQ hooks the preceding conv, which is the same tensor wherever a conv feeds the BN)."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
        self.inputs: list[torch.Tensor] = []
        self.handles = [
            layer.register_forward_pre_hook(lambda _, args: self.inputs.append(args[0]))
            for layer in self.layers
        ]

    def loss(self) -> torch.Tensor:
        """sum_l ||mu_l - mu_BN||^2 + ||sigma_l - sigma_BN||^2 over the batch statistics."""
        total = 0.0
        for layer, tensor in zip(self.layers, self.inputs, strict=True):
            mean = tensor.mean(dim=(0, 2, 3))
            std = (tensor.var(dim=(0, 2, 3), unbiased=False) + layer.eps).sqrt()
            target_std = (layer.running_var + layer.eps).sqrt()
            total = total + (mean - layer.running_mean).square().sum()
            total = total + (std - target_std).square().sum()
        self.inputs.clear()
        return total

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass(frozen=True)
class SynthesisSettings:
    count: int = 1024
    iterations: int = 200
    lr: float = 0.1
    ce_weight: float = 0.1
    batch_size: int = 128


def synthesize(
    model: nn.Module, size: tuple[int, int], num_classes: int, settings: SynthesisSettings,
    context: RunContext,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:  # fmt: skip
    """`count` images in [0, 1] (NCHW, CPU), the labels each was pushed towards, and the
    BN-statistics loss at the start and end. The objective is the slides' min_x sum_j
    ||mu~_j - mu_j||^2 + ||sigma~_j - sigma_j||^2 + L(F(x), y) through `model` (in C&C, the
    scaled and truncated compact model)."""
    model.eval()
    generator = context.generator(offset=11)
    recorder = BatchNormInputs(model)
    batches, targets, first, last = [], [], 0.0, 0.0
    steps = -(-settings.count // settings.batch_size) * settings.iterations
    bar = context.progress(total=steps, desc="cc synthesis", unit="step")
    with frozen(model):
        for part in batch_slices(settings.count, settings.batch_size):
            n = part.stop - part.start
            logits = (torch.randn(n, 3, *size, generator=generator) * 0.5).to(context.device)
            logits.requires_grad_(True)
            labels = torch.randint(0, num_classes, (n,), generator=generator).to(context.device)
            optimizer = torch.optim.Adam([logits], lr=settings.lr)
            for iteration in range(settings.iterations):
                output = model(torch.sigmoid(logits))
                statistics = recorder.loss()
                loss = statistics + settings.ce_weight * F.cross_entropy(output, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if iteration == 0:
                    first += statistics.item() * n / settings.count
                bar.update()
            with torch.no_grad():
                model(torch.sigmoid(logits))
                last += recorder.loss().item() * n / settings.count
            batches.append(torch.sigmoid(logits).detach().cpu())
            targets.append(labels.cpu())
    bar.close()
    recorder.remove()
    statistics = {"bn_loss_start": first, "bn_loss_end": last}
    return torch.cat(batches), torch.cat(targets), statistics


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.cat(
        [model(images[part].to(device)).argmax(1).cpu() for part in batch_slices(len(images), 256)]
    )


def adversarial_copies(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
    context: RunContext,
) -> torch.Tensor:  # fmt: skip
    """Untargeted L-inf PGD away from the model's own labels."""
    model.eval()
    generator = context.generator(offset=12)
    with frozen(model):
        out = [
            pgd_away_from_label(
                model, images[part].to(context.device), labels[part].to(context.device), eps,
                steps, generator,
            ).cpu()
            for part in batch_slices(len(images), 256)
        ]  # fmt: skip
    return torch.cat(out)
