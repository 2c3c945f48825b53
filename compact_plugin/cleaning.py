"""Clean & Compact (Phan et al., ECCV 2024), reconstructed from the abstract, footnote 1 and the
issue (the authors' code is not public): decompose every conv (step 1), clip outsized rank
components (step 2), prune ranks to a compression target (step 3), then fine-tune the compact
model on ZeroQ synthetic data and its adversarial copies (steps 4-5), with no real data."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor import (
    EpochCheckpoint,
    RunContext,
    cached,
    check_finite_loss,
    random_crop_flip,
    shuffled_batches,
    unwrap,
)
from purify_backdoor.compact.activation_fit import fit_to_activations
from purify_backdoor.compact.ranks import choose_ranks, decomposable_convs
from purify_backdoor.compact.scaling import normalized_singular_values, scale_core
from purify_backdoor.compact.synthesis import (
    SynthesisSettings,
    adversarial_copies,
    predict,
    synthesize,
)
from purify_backdoor.compact.tucker import Tucker2, TuckerConv2d, hosvd, unfold

MAX_GRAD_NORM = 5.0
# Where the pruned layers' Tucker factors come from: the clipped kernel's HOSVD (weights only), or
# a fit to the layer's inputs and outputs on the synthetic images (`activation_fit.py`).
BASES = ("activations", "weights")
# What an activation-fitted layer reproduces: its own kernel's outputs on the inputs it now gets
# (`layer`), or the unpruned (clipped) network's outputs of that layer (`network`: asymmetric
# reconstruction, which keeps far more clean accuracy and, on the shared checkpoint, the backdoor).
FIT_TARGETS = ("layer", "network")


@dataclass(frozen=True)
class CleanCompactSettings:
    tau_scale: float = 2.0
    compression: float = 2.0
    rank_rule: str = "energy"
    bases: str = "activations"
    fit_target: str = "layer"
    synthetic: int = 1024
    synthesis_iterations: int = 200
    synthesis_lr: float = 0.1
    synthesis_ce: float = 0.1
    adversarial_eps: float = 8.0
    adversarial_steps: int = 10
    # Step 5's fine-tuning is off by default: on the shared checkpoint every variant tried on
    # synthetic data lowered clean accuracy (docs/compact.md); `epochs` > 0 turns it on.
    epochs: int = 0
    lr: float = 0.01
    batch_size: int = 128


@torch.no_grad()
def decompose_and_clip(
    model: nn.Module, tau_scale: float, ranks: dict[str, tuple[int, int]]
) -> dict[str, dict]:
    """Steps 1-3 in place: every groups=1 conv is HOSVD-decomposed and its core clipped; layers
    in `ranks` become TuckerConv2d at those ranks, the rest get the clipped kernel back dense."""
    report = {}
    for name, conv in decomposable_convs(model).items():
        decomposition = hosvd(conv.weight)
        core, clipped = scale_core(decomposition.core, tau_scale)
        scaled = Tucker2(core, decomposition.out_factor, decomposition.in_factor)
        if name in ranks:
            model.set_submodule(
                name, TuckerConv2d.from_decomposition(conv, scaled.truncate(*ranks[name]))
            )
        else:
            conv.weight.copy_(scaled.reconstruct().to(conv.weight.dtype))
        share = normalized_singular_values(unfold(decomposition.core, 0).norm(dim=1))
        report[name] = {
            "clipped": clipped,
            "ranks": list(ranks.get(name, conv.weight.shape[:2])),
            "spectrum": [round(float(value), 6) for value in share],  # mode 1, before scaling
        }
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
    """Cross-entropy on synthetic + adversarial-synthetic images with the original model's labels
    (clean) and pre-attack labels (adversarial). BatchNorm trains: after clipping and pruning, the
    layers' outputs no longer match the stored running statistics, and with them frozen the
    gradients exploded within a few steps (NaN at step 4 on the shared checkpoint). Gradients are
    also clipped to norm 5."""
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
    """A decomposed, clipped copy of `model`, the ranks chosen for it and the layer report.
    Under `bases=activations` the ranked layers stay dense here: `fit_pruned_layers` prunes
    them."""
    compact = copy.deepcopy(model).eval()
    inner = unwrap(compact)
    ranks = choose_ranks(inner, settings.compression, settings.rank_rule)
    fit = settings.bases == "activations"
    return compact, ranks, decompose_and_clip(inner, settings.tau_scale, {} if fit else ranks)


def fit_pruned_layers(
    compact: nn.Module, images: torch.Tensor, ranks: dict[str, tuple[int, int]], fit_target: str,
    device: torch.device,
) -> None:  # fmt: skip
    """Step 3b in place on `decomposed`'s model, on any images (synthetic in the defense)."""
    reference = copy.deepcopy(compact) if fit_target == "network" else None
    fit_to_activations(compact, unwrap(compact), images, ranks, device, reference)


def clean_and_compact(
    model: nn.Module, size: tuple[int, int], num_classes: int, settings: CleanCompactSettings,
    context: RunContext,
) -> tuple[nn.Module, dict]:  # fmt: skip
    """The compact, purified model (with TuckerConv2d layers) and what to report."""
    original = copy.deepcopy(model).eval()
    compact, ranks, layers = decomposed(model, settings)
    fit = settings.bases == "activations"
    if settings.epochs == 0 and not (fit and ranks):
        return compact, {"layers": layers}

    synthesis = SynthesisSettings(
        count=settings.synthetic,
        iterations=settings.synthesis_iterations,
        lr=settings.synthesis_lr,
        ce_weight=settings.synthesis_ce,
    )

    def make_data() -> dict:
        synthetic, statistics = synthesize(original, size, num_classes, synthesis, context)
        labels = predict(original, synthetic, context.device)
        return {"synthetic": synthetic, "labels": labels} | statistics

    data = cached(context, "cc-synthetic", make_data)
    synthetic, labels = data["synthetic"], data["labels"]
    if fit:
        fit_pruned_layers(compact, synthetic, ranks, settings.fit_target, context.device)
        for name, pair in ranks.items():
            layers[name]["ranks"] = list(pair)
    details = {
        "layers": layers,
        "synthesis": {key: data[key] for key in ("bn_loss_start", "bn_loss_end")},
        "synthetic_label_counts": torch.bincount(labels, minlength=num_classes).tolist(),
    }
    if settings.epochs == 0:
        return compact, details

    def make_adversarial() -> dict:
        eps = settings.adversarial_eps / 255
        copies = adversarial_copies(
            original, synthetic, labels, eps, settings.adversarial_steps, context
        )
        return {"images": copies}

    adversarial = cached(context, "cc-adversarial", make_adversarial)["images"]
    landed = torch.bincount(predict(original, adversarial, context.device), minlength=num_classes)
    images = torch.cat([synthetic, adversarial])
    targets = torch.cat([labels, labels])
    finetune_on_synthetic(compact, images, targets, settings, context)
    # In a backdoored model untargeted perturbations pile up in the target class.
    return compact, details | {"adversarial_label_counts": landed.tolist()}
