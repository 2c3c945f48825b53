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
