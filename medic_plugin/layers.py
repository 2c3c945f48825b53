"""Which activations MEDIC clones, and recording them with forward hooks on the real modules, so any
torch model works without being rewritten.

Following the reference's `--hook-plane conv+bn`: the outputs of convolution and normalization
layers, except the residual shortcut (`convShortcut`, `shortcut`, `downsample`) and the final
normalization that feeds the classifier. On WRN-16-1 that is 25 tensors."""

from __future__ import annotations

import torch
from torch import nn

SHORTCUT_NAMES = {"convShortcut", "shortcut", "downsample"}
NORM_TYPES = (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def cloned_layers(model: nn.Module, kinds: str = "conv+bn") -> list[tuple[str, nn.Module]]:
    """(name, module) pairs in forward-registration order; `kinds` is conv, bn or conv+bn."""
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
    return chosen


class ActivationRecorder:
    """Keeps each hooked module's output and hands a copy downstream. The copy matters: with an
    in-place ReLU after a BatchNorm (torchvision ResNets), the recorded value would otherwise be
    the post-ReLU one. We clone the layer's own output, as the paper defines it."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.outputs: list[torch.Tensor] = []
        self.handles = [module.register_forward_hook(self._record) for module in modules]

    def _record(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        self.outputs.append(output)
        return output.clone()

    def take(self) -> list[torch.Tensor]:
        outputs, self.outputs = self.outputs, []
        return outputs

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
