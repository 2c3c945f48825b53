"""Clean & Compact (Phan et al., ECCV 2024) in the slides' order (the authors' code is not
public): Tucker-2 of every conv (step 1), mode-1 then mode-2 clipping of outsized rank components
(step 2), truncation to the ranks the compression target needs (step 3), ZeroQ synthesis through
that constrained compact model (step 4), untargeted adversarial copies of the synthetic images and
fine-tuning of the compact model on both sets (step 5), with no real data. Our departures are
options, off by default (docs/compact.md)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor import (
    EpochCheckpoint,
    RunContext,
    batch_slices,
    cached,
    check_finite_loss,
    random_crop_flip,
    shuffled_batches,
    unwrap,
)
from purify_backdoor.compact.activation_fit import fit_to_activations
from purify_backdoor.compact.ranks import choose_ranks, decomposable_convs
from purify_backdoor.compact.scaling import scale_cores
from purify_backdoor.compact.synthesis import (
    SynthesisSettings,
    adversarial_copies,
    predict,
    synthesize,
)
from purify_backdoor.compact.tucker import Tucker2, TuckerConv2d, hosvd

MAX_GRAD_NORM = 5.0
# Where the pruned layers' Tucker factors come from: truncation of the clipped kernel's HOSVD
# (`weights`, the slides), or a fit to the layer's inputs and outputs on the synthetic images
# (`activations`, our departure: `activation_fit.py`).
BASES = ("weights", "activations")
# What an activation-fitted layer reproduces: its own kernel's outputs on the inputs it now gets
# (`layer`), or the unpruned (clipped) network's outputs of that layer (`network`: asymmetric
# reconstruction, which keeps far more clean accuracy and, on the shared checkpoint, the backdoor).
FIT_TARGETS = ("layer", "network")
# The model the synthetic images are optimised through: the compact one (the slides' F_{W^comp}),
# or the original backdoored one (our earlier departure, which carried the trigger into the data).
SYNTHESIS_MODELS = ("compact", "original")
# Who labels the synthetic images for fine-tuning: the labels the synthesis aimed at (`sampled`,
# the slides' y), or the compact or original model's prediction.
LABEL_SOURCES = ("sampled", "compact", "original")


@dataclass(frozen=True)
class CleanCompactSettings:
    tau_scale: float = 2.0
    threshold: str = "layer"
    compression: float = 2.0
    rank_rule: str = "energy"
    bases: str = "weights"
    fit_target: str = "layer"
    synthesis_model: str = "compact"
    synthetic: int = 1024
    synthesis_iterations: int = 200
    synthesis_lr: float = 0.1
    # The slides' objective adds L(F(x), y) unweighted.
    synthesis_ce: float = 1.0
    label_source: str = "sampled"
    soft_labels: bool = False
    adversarial_eps: float = 8.0
    adversarial_steps: int = 10
    epochs: int = 20
    lr: float = 0.01
    batch_size: int = 128


@torch.no_grad()
def clip_convs(
    model: nn.Module, tau_scale: float, threshold: str = "layer"
) -> tuple[dict[str, Tucker2], dict[str, dict]]:
    """Steps 1-2 in place: every groups=1 conv's kernel becomes its clipped reconstruction. The
    clipped decompositions (for step 3) and, per layer, what was clipped."""
    convs = decomposable_convs(model)
    decompositions, report = scale_cores(
        {name: hosvd(conv.weight) for name, conv in convs.items()}, tau_scale, threshold
    )
    for name, conv in convs.items():
        conv.weight.copy_(decompositions[name].reconstruct().to(conv.weight.dtype))
        report[name]["ranks"] = list(conv.weight.shape[:2])
    return decompositions, report


@torch.no_grad()
def truncate_convs(
    model: nn.Module, decompositions: dict[str, Tucker2], ranks: dict[str, tuple[int, int]]
) -> None:
    """Step 3 in place: the layers in `ranks` become TuckerConv2d holding the leading R1 x R2
    block of their clipped decomposition."""
    convs = decomposable_convs(model)
    for name, pair in ranks.items():
        truncated = decompositions[name].truncate(*pair)
        model.set_submodule(name, TuckerConv2d.from_decomposition(convs[name], truncated))


def decompose_and_clip(
    model: nn.Module, tau_scale: float, ranks: dict[str, tuple[int, int]], threshold: str = "layer"
) -> dict[str, dict]:
    """Steps 1-3 in place at given ranks; the layer report."""
    decompositions, report = clip_convs(model, tau_scale, threshold)
    truncate_convs(model, decompositions, ranks)
    for name, pair in ranks.items():
        report[name]["ranks"] = list(pair)
    return report


@torch.no_grad()
def dense_equivalent(model: nn.Module) -> nn.Module:
    """The same function with every TuckerConv2d folded back into one conv: the drop-in model for
    the input's own checkpoint format."""
    dense = copy.deepcopy(model)
    for name, module in list(unwrap(dense).named_modules()):
        if isinstance(module, TuckerConv2d):
            core = module.core
            conv = nn.Conv2d(
                module.first.in_channels, module.last.out_channels, core.kernel_size, core.stride,
                core.padding, core.dilation, bias=module.last.bias is not None,
                padding_mode=core.padding_mode,
            )  # fmt: skip
            conv.weight.copy_(module.dense_weight())
            if module.last.bias is not None:
                conv.bias.copy_(module.last.bias)
            unwrap(dense).set_submodule(name, conv.to(core.weight.device))
    return dense


def finetune_on_synthetic(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: CleanCompactSettings,
    context: RunContext,
) -> None:  # fmt: skip
    """Cross-entropy on synthetic + adversarial-synthetic images, each adversarial copy with its
    clean source's target (class indices or probabilities). BatchNorm trains: after clipping and
    pruning, the layers' outputs no longer match the stored running statistics, and with them
    frozen the gradients exploded within a few steps (NaN at step 4 on the shared checkpoint).
    Gradients are also clipped to norm 5."""
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=settings.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs)
    generator = context.generator(offset=13)
    path = context.workdir / "cc.state.pt" if context.workdir else None
    checkpoint = EpochCheckpoint(path, model, optimizer, scheduler, generator)
    state = checkpoint.resume(context, settings.epochs)
    start = state["epoch"] if state else 0
    steps = -(-len(images) // settings.batch_size)
    bar = context.progress(
        total=(settings.epochs - start) * steps, desc="cc fine-tune", unit="step"
    )
    model.train()
    for epoch in range(start, settings.epochs):
        for step, index in enumerate(shuffled_batches(len(images), settings.batch_size, generator)):
            batch = random_crop_flip(images[index], generator).to(context.device)
            loss = F.cross_entropy(model(batch), labels[index].to(context.device))
            check_finite_loss(loss, "cc", epoch, step, None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
            optimizer.step()
            bar.update()
        scheduler.step()
        checkpoint.save(epoch + 1)
    bar.close()
    model.eval()


def decomposed(
    model: nn.Module, settings: CleanCompactSettings
) -> tuple[nn.Module, dict[str, tuple[int, int]], dict[str, dict]]:
    """A clipped copy of `model`, the ranks the compression target needs (chosen on the clipped
    kernels, the slides' order) and the layer report. Under `bases=weights` the ranked layers are
    truncated here; under `bases=activations` they stay dense for `fit_pruned_layers`."""
    compact = copy.deepcopy(model).eval()
    inner = unwrap(compact)
    decompositions, layers = clip_convs(inner, settings.tau_scale, settings.threshold)
    ranks = choose_ranks(inner, settings.compression, settings.rank_rule)
    if settings.bases == "weights":
        truncate_convs(inner, decompositions, ranks)
    for name, pair in ranks.items():
        layers[name]["ranks"] = list(pair)
    return compact, ranks, layers


def fit_pruned_layers(
    compact: nn.Module, images: torch.Tensor, ranks: dict[str, tuple[int, int]], fit_target: str,
    device: torch.device,
) -> None:  # fmt: skip
    """Step 3b in place on `decomposed`'s model, on any images (synthetic in the defense)."""
    reference = copy.deepcopy(compact) if fit_target == "network" else None
    fit_to_activations(compact, unwrap(compact), images, ranks, device, reference)


@torch.no_grad()
def fine_tuning_targets(
    sampled: torch.Tensor, labeller: nn.Module | None, images: torch.Tensor, num_classes: int,
    soft: bool, device: torch.device,
) -> torch.Tensor:  # fmt: skip
    """Class-probability targets: one-hot of the sampled labels (no labeller), or the labeller's
    softmax (`soft`) or one-hot argmax on the images."""
    if labeller is None:
        return F.one_hot(sampled, num_classes).float()
    labeller.eval()
    probabilities = torch.cat(
        [
            labeller(images[part].to(device)).softmax(1).cpu()
            for part in batch_slices(len(images), 256)
        ]
    )
    if soft:
        return probabilities
    return F.one_hot(probabilities.argmax(1), num_classes).float()


def clean_and_compact(
    model: nn.Module, size: tuple[int, int], num_classes: int, settings: CleanCompactSettings,
    context: RunContext,
) -> tuple[nn.Module, dict]:  # fmt: skip
    """The compact, purified model (with TuckerConv2d layers) and what to report."""
    original = copy.deepcopy(model).eval()
    compact, ranks, layers = decomposed(model, settings)
    fit = settings.bases == "activations"
    details: dict = {"layers": layers, "clipped": _clipped_total(layers)}
    context.log(where_clipped(layers))
    if settings.epochs == 0 and not (fit and ranks):
        return compact, details

    synthesis = SynthesisSettings(
        count=settings.synthetic,
        iterations=settings.synthesis_iterations,
        lr=settings.synthesis_lr,
        ce_weight=settings.synthesis_ce,
    )
    through = compact if settings.synthesis_model == "compact" else original

    def make_data() -> dict:
        synthetic, sampled, statistics = synthesize(through, size, num_classes, synthesis, context)
        return {"synthetic": synthetic, "sampled": sampled} | statistics

    data = cached(context, "cc-synthetic", make_data)
    synthetic = data["synthetic"]
    if fit:
        fit_pruned_layers(compact, synthetic, ranks, settings.fit_target, context.device)
    labeller = {"sampled": None, "compact": compact, "original": original}[settings.label_source]
    targets = fine_tuning_targets(
        data["sampled"], labeller, synthetic, num_classes, settings.soft_labels, context.device
    )
    details |= {
        "synthesis": {key: data[key] for key in ("bn_loss_start", "bn_loss_end")},
        "synthetic_label_counts": _counts(targets.argmax(1), num_classes),
    }
    if settings.epochs == 0:
        return compact, details

    def make_adversarial() -> dict:
        eps = settings.adversarial_eps / 255
        hard = targets.argmax(1)
        copies = adversarial_copies(
            compact, synthetic, hard, eps, settings.adversarial_steps, context
        )
        return {"images": copies}

    adversarial = cached(context, "cc-adversarial", make_adversarial)["images"]
    # Untargeted perturbations of a backdoored model pile up in the target class: where they land
    # on the model that made them (the compact one) and on the original.
    details["adversarial_label_counts"] = {
        "compact": _counts(predict(compact, adversarial, context.device), num_classes),
        "original": _counts(predict(original, adversarial, context.device), num_classes),
    }
    images = torch.cat([synthetic, adversarial])
    finetune_on_synthetic(compact, images, torch.cat([targets, targets]), settings, context)
    return compact, details


def _counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels, minlength=num_classes).tolist()


def where_clipped(layers: dict[str, dict]) -> str:
    """One line for the terminal: how many rank components were clipped, and in which layers."""
    counts = {name: sum(layer["clipped"].values()) for name, layer in layers.items()}
    acted = {name: count for name, count in counts.items() if count}
    if not acted:
        return "cc: no rank component crossed tau_scale; nothing was clipped"
    most = ", ".join(
        f"{name} {count}" for name, count in sorted(acted.items(), key=lambda kv: -kv[1])[:5]
    )
    return (
        f"cc: clipped {sum(acted.values())} rank components in {len(acted)} of {len(layers)} "
        f"convolutions (most: {most}); per layer and mode in the report's details.cc.layers"
    )


def _clipped_total(layers: dict[str, dict]) -> dict[str, int]:
    return {
        mode: sum(layer["clipped"][mode] for layer in layers.values())
        for mode in ("mode1", "mode2")
    }
