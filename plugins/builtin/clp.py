"""CLP, Channel Lipschitzness-based Pruning (Zheng et al., ECCV 2022): data-free. For every
convolution followed by a BatchNorm (directly or through pooling), the upper bound of channel k's
Lipschitz constant is UCLC_k = |gamma_k / sqrt(var_k)| * sigma_max(W_k) (W_k reshaped C_in x
kh*kw; no BN eps, as the official code). Channels with UCLC above mean + u * std of their layer
(unbiased std) are pruned by zeroing the BN's gamma and beta, so they output 0."""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from purify_backdoor import Defense, DefenseJob, Figure, Option, channel_scores_figure, hookimpl

POOLS = (nn.MaxPool2d, nn.AvgPool2d)


def conv_bn_pairs(model: nn.Module) -> tuple[list[tuple[str, nn.Conv2d, nn.BatchNorm2d]], str]:
    """Pairs (BN name, conv, BN) where the BN reads the conv's output, found in the traced graph,
    through max or average pooling between them (a per-channel 1-Lipschitz map, so the bound
    holds; airbench94's conv -> pool -> BN). The official code pairs a BN with the last conv
    registered before it, which mis-pairs pre-activation blocks (BackdoorBench applies it to
    PreActResNet anyway); module order is only the fallback for models fx cannot trace."""
    modules = dict(model.named_modules())
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - any untraceable model falls back to module order
        pairs, last = [], None
        for name, module in modules.items():
            if isinstance(module, nn.Conv2d):
                last = module
            elif isinstance(module, nn.BatchNorm2d) and last is not None:
                pairs.append((name, last, module))
        return pairs, "module order"
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        while source.op == "call_module" and isinstance(modules[source.target], POOLS):
            source = source.args[0]
        if source.op == "call_module" and isinstance(modules[source.target], nn.Conv2d):
            pairs.append((node.target, modules[source.target], modules[node.target]))
    return pairs, "graph"


def channel_lipschitz_bounds(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """UCLC of each output channel (CLP section 3, official `CLP()`)."""
    weight = conv.weight.detach().flatten(2)  # C_out x C_in x (kh*kw)
    scale = (bn.weight.detach() / bn.running_var.sqrt()).abs()
    return torch.linalg.matrix_norm(weight, ord=2) * scale


@torch.no_grad()
def clp_prune(model: nn.Module, u: float) -> dict[str, object]:
    pairs, pairing = conv_bn_pairs(model)
    pruned = {}
    for name, conv, bn in pairs:
        bounds = channel_lipschitz_bounds(conv, bn)
        index = (bounds > bounds.mean() + u * bounds.std()).nonzero().flatten()
        bn.weight[index] = 0
        bn.bias[index] = 0
        pruned[name] = index.tolist()
    return {
        "pairing": pairing,
        "layers": len(pairs),
        "pruned_channels": sum(map(len, pruned.values())),
        "pruned": pruned,
    }


def bounds_figure(
    bounds: dict[str, torch.Tensor], pruned: dict[str, list[int]], u: float
) -> Figure | None:
    """Every channel's UCLC per layer, the layer's mean + u * std as a dash, pruned in red."""
    return channel_scores_figure(
        f"Upper bound of each channel's Lipschitz constant (UCLC) per BatchNorm layer; channels "
        f"above their layer's mean + {u:g} std (the dash) are pruned (red).",
        {name: values.tolist() for name, values in bounds.items()},
        pruned,
        {name: float(values.mean() + u * values.std()) for name, values in bounds.items()},
        "UCLC",
        log=True,
    )


def run(job: DefenseJob) -> nn.Module:
    model = copy.deepcopy(job.model).cpu().eval()
    with torch.no_grad():
        bounds = {
            name: channel_lipschitz_bounds(conv, bn) for name, conv, bn in conv_bn_pairs(model)[0]
        }
    job.details["clp"] = clp_prune(model, job.options["u"])
    figure = bounds_figure(bounds, job.details["clp"]["pruned"], job.options["u"])
    if figure is not None:
        job.figures["pruned"] = figure
    if job.details["clp"]["pruned_channels"] == 0:
        job.leave_unchanged(
            "nothing pruned",
            f"no channel's Lipschitz upper bound exceeds its layer's mean + {job.options['u']} std",
        )
    return model.to(job.context.device)


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="clp",
            description="CLP (ECCV 2022): data-free pruning of high-Lipschitz-bound channels",
            run=run,
            needs_data=False,
            options=(Option("u", float, 3.0, "prune channels above mean + u * std per layer"),),
        )
    )
