"""Which activations MEDIC clones, and recording them with forward hooks on the real modules, so any
torch model works without being rewritten.

Following the reference's `--hook-plane conv+bn`: the outputs of convolution and normalization
layers, except the residual shortcut (`convShortcut`, `shortcut`, `downsample`) and the final
normalization that feeds the classifier. On WRN-16-1 that is 25 tensors. `conv+bn+fc` adds the
fully-connected layers, the classifier included, as appendix B's "all the convolution,
normalization, and fully-connected layers" reads.

A neuron is one element of a layer's output (footnote 2). Its channel, over which mu and sigma
are pooled, is axis 1 for channels-first layers (convolutions, BatchNorm, GroupNorm,
InstanceNorm, ConvNeXt's LayerNorm2d: (N, C, H, W)) and the last axis for layers that act on
features (Linear, LayerNorm: (N, features) or a ViT's (N, tokens, features))."""

from __future__ import annotations

import torch
from torch import nn

SHORTCUT_NAMES = {"convShortcut", "shortcut", "downsample"}
NORM_TYPES = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
KINDS = ("conv", "bn", "conv+bn", "conv+bn+fc")


def channel_axis(module: nn.Module) -> int:
    """The output axis that indexes a neuron's channel (see the module docstring)."""
    from torchvision.models.convnext import LayerNorm2d

    if isinstance(module, LayerNorm2d):
        return 1
    return -1 if isinstance(module, nn.Linear | nn.LayerNorm) else 1


def cloned_layers(model: nn.Module, kinds: str = "conv+bn") -> list[tuple[str, nn.Module]]:
    """(name, module) pairs in forward-registration order; `kinds` is one of KINDS."""
    wanted = set(kinds.split("+"))
    named = [
        (name, module)
        for name, module in model.named_modules()
        if name and not SHORTCUT_NAMES & set(name.split("."))
    ]
    convs = [i for i, (_, module) in enumerate(named) if isinstance(module, nn.Conv2d)]
    last_conv = convs[-1] if convs else -1
    chosen = []
    for index, (name, module) in enumerate(named):
        if isinstance(module, nn.Conv2d) and "conv" in wanted:
            chosen.append((name, module))
        elif isinstance(module, NORM_TYPES) and "bn" in wanted:
            final_norm = "." not in name and index > last_conv
            if not final_norm:
                chosen.append((name, module))
        elif isinstance(module, nn.Linear) and "fc" in wanted:
            chosen.append((name, module))
    return chosen


@torch.no_grad()
def called_once(
    model: nn.Module, layers: list[tuple[str, nn.Module]], example: torch.Tensor
) -> list[tuple[str, nn.Module]]:
    """The layers whose forward runs exactly once per model forward and returns one tensor, in
    the order they run. Others cannot be cloned by position: a Linear that its parent never
    calls (`MultiheadAttention.out_proj`), a block applied twice, a layer returning a tuple."""
    calls: dict[int, list[object]] = {id(module): [] for _, module in layers}
    order: list[int] = []

    def count(module: nn.Module, inputs: tuple, output: object) -> None:
        calls[id(module)].append(output)
        order.append(id(module))

    handles = [module.register_forward_hook(count) for _, module in layers]
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
    by_id = {id(module): (name, module) for name, module in layers}
    return [
        by_id[key]
        for key in order
        if len(calls[key]) == 1 and isinstance(calls[key][0], torch.Tensor)
    ]


class ActivationRecorder:
    """Keeps each hooked module's output. Where something downstream changes that output in place
    (an in-place ReLU after a BatchNorm, `out += identity` in torchvision ResNets), the module's
    consumers get a copy instead, so the recorded value stays the layer's own output, as the paper
    defines it. `calibrate` finds those modules with one forward pass; until then every module's
    output is copied, which is always correct."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.outputs: list[torch.Tensor] = []
        self.copy = {id(module): True for module in modules}
        self.handles = [module.register_forward_hook(self._record) for module in modules]
        self._versions: list[tuple[int, int]] = []

    def _record(
        self, module: nn.Module, inputs: tuple, output: torch.Tensor
    ) -> torch.Tensor | None:
        self.outputs.append(output)
        self._versions.append((id(module), output._version))
        return output.clone() if self.copy[id(module)] else None

    @torch.no_grad()
    def calibrate(self, model: nn.Module, example: torch.Tensor) -> None:
        """Copy only the outputs that are modified in place (seen by autograd's version counter)."""
        self.copy = dict.fromkeys(self.copy, False)
        self.outputs, self._versions = [], []
        model(example)
        for output, (key, version) in zip(self.outputs, self._versions, strict=True):
            self.copy[key] = self.copy[key] or output._version != version
        self.take()

    def take(self) -> list[torch.Tensor]:
        outputs, self.outputs, self._versions = self.outputs, [], []
        return outputs

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
