"""The clone MEDIC trains FROM SCRATCH (sec. 3): a copy of the teacher's architecture with every
parameter and running statistic re-initialised, none of the teacher's values left in it.

Where the architecture is one the registry builds (the adapters name it), a new instance of it
is built and its state loaded into the copy: exactly the architecture's own initialiser (NAD's
WideResNet scheme, torchvision's ResNet/ViT/ConvNeXt/EfficientNet ones), as the reference builds
its student from its own model zoo. Any other network is re-initialised module by module with
PyTorch's defaults (`reset_parameters`, `MultiheadAttention._reset_parameters`), plus
torchvision's own scheme for the parameters that live outside layers (a ViT's class token and
position embedding, ConvNeXt's layer scale). A parameter neither path can re-initialise is an
error, never silently the teacher's value. Buffers that are not running statistics (index tables,
an input normalisation) are structure, not learned state, and are kept."""

from __future__ import annotations

import copy

from torch import nn

from purify_backdoor import PurifyError, build_model, output_classes, unwrap, weight_mismatches

CONVNEXT_LAYER_SCALE = 1e-6  # torchvision's default for every ConvNeXt builder


def fresh_clone(model: nn.Module, arch: str | None = None) -> nn.Module:
    """Same architecture (and any input-normalisation wrapper), re-initialised."""
    clone = copy.deepcopy(model)
    network = unwrap(clone)
    if not (arch and _load_fresh_instance(network, arch)):
        reinitialise(network)
    return clone


def _load_fresh_instance(network: nn.Module, arch: str) -> bool:
    try:
        fresh = build_model(arch, output_classes(network.state_dict()))
    except PurifyError:
        return False
    if weight_mismatches(fresh.state_dict(), network.state_dict()):
        return False
    network.load_state_dict(fresh.state_dict())
    return True


def reinitialise(network: nn.Module) -> None:
    """Module by module, in place; raises naming the first parameter nothing re-initialised."""
    covered: set[int] = set()
    for module in network.modules():
        reset = getattr(module, "reset_parameters", None)
        reset = reset or getattr(module, "_reset_parameters", None)  # nn.MultiheadAttention
        if callable(reset):
            reset()
            covered.update(id(p) for p in module.parameters(recurse=False))
        covered.update(_torchvision_parameters(module))
    for name, module in network.named_modules():
        for parameter_name, parameter in module.named_parameters(recurse=False):
            if id(parameter) not in covered:
                where = f"{name}.{parameter_name}" if name else parameter_name
                raise PurifyError(
                    f"MEDIC cannot re-initialise parameter '{where}' of {type(module).__name__} "
                    f"(no reset_parameters and no known scheme), so the clone would keep the "
                    f"teacher's value; load the model with a registry architecture (--arch NAME) "
                    f"or use another defense"
                )


def _torchvision_parameters(module: nn.Module) -> list[int]:
    """torchvision's initialisation of parameters held directly by a model or block (read off
    its `__init__`); the ids of the parameters it set."""
    import torchvision.models.convnext as convnext
    import torchvision.models.vision_transformer as vit

    if isinstance(module, vit.VisionTransformer):
        nn.init.zeros_(module.class_token)
        return [id(module.class_token)]
    if isinstance(module, vit.Encoder):
        nn.init.normal_(module.pos_embedding, std=0.02)
        return [id(module.pos_embedding)]
    if isinstance(module, convnext.CNBlock):
        nn.init.constant_(module.layer_scale, CONVNEXT_LAYER_SCALE)
        return [id(module.layer_scale)]
    return []
