"""ANP, Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021): backdoor neurons are the ones whose
small perturbation most easily flips the clean predictions. Every BatchNorm channel k gets a mask
m_k in [0, 1] and multiplicative perturbations delta_k, xi_k in [-eps, eps] on its scale and shift;
the masks minimise alpha * L(m) + (1 - alpha) * max_{delta, xi} L(m + delta, 1 + xi) on clean data
(eq. 5 and Algorithm 1), and channels whose mask ends at or below a fixed threshold are pruned by
zeroing their BN scale, as the reference `prune_neuron_cifar.py` does.

The threshold is a fixed number (the paper's 0.2), never chosen by looking at poisoned test data
(BackdoorBench picks it by test ASR; issue 35 there). As in the reference `optimize_mask_cifar.py`,
the network runs in training mode during the mask search (batch statistics), with one signed
gradient step of size eps from a uniform random start per batch; unlike the reference, the
perturbation is projected back into [-eps, eps] after that step, as eq. 5 constrains it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from purify_backdoor import (
    Defense,
    DefenseJob,
    EpochCheckpoint,
    Option,
    PurifyError,
    RunContext,
    above,
    at_least,
    between,
    channel_scores_figure,
    check_finite_loss,
    hookimpl,
    random_crop_flip,
    to_tensor,
)

SAVE_EVERY = 100  # mask steps between saved states (about a minute and a half on 2 CPU cores)


class NeuronPerturbation:
    """Mask and perturbation of one BN layer's channels, applied by a forward hook on the real
    module (no model rewrite) that recomputes the output with scale * (m + delta) and
    shift * (1 + xi) from batch statistics."""

    def __init__(self, bn: _BatchNorm) -> None:
        channels = bn.num_features
        device = bn.weight.device
        self.mask = nn.Parameter(torch.ones(channels, device=device))
        self.scale_noise = torch.zeros(channels, device=device, requires_grad=True)
        self.shift_noise = torch.zeros(channels, device=device, requires_grad=True)
        self.perturbed = False
        self.handle = bn.register_forward_hook(self._forward)

    def _forward(self, bn: _BatchNorm, inputs: tuple, _: torch.Tensor) -> torch.Tensor:
        scale = self.mask + self.scale_noise if self.perturbed else self.mask
        shift = 1 + self.shift_noise if self.perturbed else 1
        return F.batch_norm(
            inputs[0], None, None, bn.weight * scale, bn.bias * shift, training=True, eps=bn.eps
        )


@contextmanager
def perturbable(model: nn.Module) -> Iterator[dict[str, NeuronPerturbation]]:
    layers = {
        name: NeuronPerturbation(module)
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm) and module.affine
    }
    if not layers:
        raise PurifyError("anp needs a model with affine BatchNorm layers; it masks their channels")
    try:
        yield layers
    finally:
        for layer in layers.values():
            layer.handle.remove()


def optimise_masks(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    options: dict,
    context: RunContext,
) -> dict[str, torch.Tensor]:
    """Algorithm 1: per batch, one adversarial step on the neuron perturbations, then one SGD step
    on the masks for the mixed natural/robust loss; masks clipped to [0, 1]. Runs the model in
    training mode, so pass a copy: its BN running statistics change. The masks, optimizer and
    both RNGs are saved every SAVE_EVERY steps: `--resume` ends where an unbroken run does."""
    eps, alpha = options["eps"], options["alpha"]
    generator = context.generator(offset=40)
    torch.manual_seed(context.seed + 41)  # the random starts of the perturbations
    device = next(model.parameters()).device
    with perturbable(model) as layers:
        masks = nn.ParameterList(layer.mask for layer in layers.values())
        noises = [t for layer in layers.values() for t in (layer.scale_noise, layer.shift_noise)]
        optimizer = torch.optim.SGD(masks, lr=options["lr"], momentum=0.9)
        constant = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        path = context.workdir / "anp.state.pt" if context.workdir else None
        checkpoint = EpochCheckpoint(path, masks, optimizer, constant, generator)
        state = checkpoint.resume(context, options["iterations"])
        start = state["epoch"] if state else 0  # here: steps done
        if state:
            torch.set_rng_state(state["torch_rng"])
        model.train().requires_grad_(False)
        bar = context.progress(total=options["iterations"] - start, desc="anp", unit="step")
        for step in range(start, options["iterations"]):
            if step > start and step % SAVE_EVERY == 0:
                checkpoint.save(step, torch_rng=torch.get_rng_state())
            # The reference samples batches with replacement.
            index = torch.randint(len(images), (options["batch_size"],), generator=generator)
            batch = random_crop_flip(images[index], generator).to(device)
            target = labels[index].to(device)

            def loss_with(perturbed: bool, batch=batch, target=target) -> torch.Tensor:
                for layer in layers.values():
                    layer.perturbed = perturbed
                return F.cross_entropy(model(batch), target)

            if eps > 0:
                with torch.no_grad():
                    for noise in noises:
                        noise.uniform_(-eps, eps)
                gradients = torch.autograd.grad(-loss_with(True), noises)
                with torch.no_grad():
                    for noise, gradient in zip(noises, gradients, strict=True):
                        noise.sub_(eps * gradient.sign()).clamp_(-eps, eps)
                robust = loss_with(True)
            else:
                robust = torch.zeros((), device=device)
            loss = alpha * loss_with(False) + (1 - alpha) * robust
            check_finite_loss(loss, "anp", 0, step, None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for mask in masks:
                    mask.clamp_(0, 1)
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        return {name: layer.mask.detach().cpu() for name, layer in layers.items()}


@torch.no_grad()
def prune_by_threshold(
    model: nn.Module, masks: dict[str, torch.Tensor], threshold: float
) -> dict[str, list[int]]:
    modules = dict(model.named_modules())
    pruned = {}
    for name, mask in masks.items():
        index = (mask <= threshold).nonzero().flatten()
        modules[name].weight[index.to(modules[name].weight.device)] = 0
        pruned[name] = index.tolist()
    return pruned


def run(job: DefenseJob) -> nn.Module:
    options, context = job.options, job.context
    masks = optimise_masks(
        copy.deepcopy(job.model).to(context.device),
        to_tensor(job.clean.images),
        torch.from_numpy(job.clean.labels),
        options,
        context,
    )
    model = copy.deepcopy(job.model).to(context.device).eval()
    pruned = prune_by_threshold(model, masks, options["threshold"])
    values = torch.cat(list(masks.values()))
    job.details["anp"] = {
        "neurons": len(values),
        "pruned_neurons": sum(map(len, pruned.values())),
        "mask_quantiles": {str(q): float(values.quantile(q)) for q in (0.01, 0.05, 0.25, 0.5)},
        "pruned": {name: index for name, index in pruned.items() if index},
    }
    figure = channel_scores_figure(
        f"ANP's mask of each BatchNorm neuron after {options['iterations']} steps of adversarial "
        f"neuron perturbation; neurons at or below {options['threshold']:g} (the dash) are "
        f"pruned (red).",
        {name: mask.tolist() for name, mask in masks.items()},
        pruned,
        dict.fromkeys(masks, options["threshold"]),
        "mask value",
    )
    if figure is not None:
        job.figures["pruned"] = figure
    if job.details["anp"]["pruned_neurons"] == 0:
        job.leave_unchanged(
            "nothing pruned", f"no neuron's mask ended at or below {options['threshold']}"
        )
    return model


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="anp",
            description="ANP (NeurIPS 2021): prune BN neurons that adversarial noise exploits",
            run=run,
            options=(
                Option("eps", float, 0.4, "bound of the neuron perturbations", bounds=above(0)),
                Option(
                    "alpha",
                    float,
                    0.2,
                    "weight of the natural loss (1 - alpha: robust loss)",
                    bounds=between(0, 1),
                ),
                Option(
                    "lr",
                    float,
                    0.2,
                    "SGD learning rate of the masks (momentum 0.9)",
                    bounds=above(0),
                ),
                Option("iterations", int, 2000, "mask optimisation steps", bounds=at_least(1)),
                Option(
                    "batch_size",
                    int,
                    128,
                    "batch size of the mask optimisation",
                    bounds=at_least(1),
                ),
                Option(
                    "threshold",
                    float,
                    0.2,
                    "prune neurons whose mask is at or below this",
                    bounds=between(0, 1),
                ),
            ),
        )
    )
