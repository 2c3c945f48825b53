"""Tucker-2 factors fitted to what a layer sees instead of to its kernel alone. Truncating a
weight-space HOSVD (`tucker.py`) keeps the directions of largest kernel energy, which are not the
ones the network uses: on the shared WRN-16-1 at 2x it leaves 20% clean accuracy. Here the input
factor comes from the kernel whitened by the layer's input second moments, and the output factor
from the principal directions of the reduced layer's outputs, both measured on synthetic inputs
(response reconstruction, as in Zhang et al., TPAMI 2016, applied to the two Tucker-2 modes).
Layers are fitted in network order, each on the outputs of the layers already replaced. Given the
original network, each layer is fitted to reproduce the *original* layer's outputs from those
inputs (asymmetric reconstruction, Zhang et al. TPAMI 2016, sec. 3.3), so later layers absorb
earlier errors instead of compounding them. Directions the data never excites, such as a
trigger's (C&C's premise), are the first to go."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor import batch_slices
from purify_backdoor.compact.ranks import decomposable_convs
from purify_backdoor.compact.tucker import TuckerConv2d, unfold

# Ridge on the input second moments, relative to their mean eigenvalue: keeps the whitening
# invertible where the synthetic inputs leave a channel (nearly) constant.
RIDGE = 1e-3


@torch.no_grad()
def fit_to_activations(
    model: nn.Module,
    inner: nn.Module,
    images: torch.Tensor,
    ranks: dict[str, tuple[int, int]],
    device: torch.device,
    reference: nn.Module | None = None,
    reference_images: torch.Tensor | None = None,
    batch_size: int = 256,
) -> None:
    """Replace each conv of `inner` named in `ranks` by a TuckerConv2d fitted on `images` run
    through `model` (which contains `inner`, e.g. behind an input normalization). With
    `reference`, an untouched copy of `model`, each layer targets the reference layer's outputs
    on `reference_images` (default: `images`), paired with `images` one to one."""
    model.eval()
    prefix = next(name for name, module in model.named_modules() if module is inner)
    for name, conv in decomposable_convs(inner).items():
        if name not in ranks:
            continue
        inputs = _inputs_of(model, conv, images, device, batch_size)
        original_inputs = None
        if reference is not None:
            original = reference.get_submodule(f"{prefix}.{name}" if prefix else name)
            targets = images if reference_images is None else reference_images
            original_inputs = _inputs_of(reference.eval(), original, targets, device, batch_size)
        inner.set_submodule(name, fitted_layer(conv, inputs, *ranks[name], original_inputs))


@torch.no_grad()
def fitted_layer(
    conv: nn.Conv2d, inputs: torch.Tensor, out_rank: int, in_rank: int,
    original_inputs: torch.Tensor | None = None,
) -> nn.Module:  # fmt: skip
    """Input mode: with S = E[x x^T]^(1/2), the first 1x1 conv is V^T S^-1 and the core W x2 (S V),
    V the leading right singular vectors of W x2 S (output error under whitened inputs). Output
    mode: U1 are the leading eigenvectors of E[y y^T] of that reduced layer's outputs y. With
    `original_inputs`, W is first replaced by the kernel that best maps `inputs` to the original
    layer's outputs on `original_inputs`."""
    weight = conv.weight.detach().double()
    if (
        original_inputs is not None
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    ):
        weight = corrected_kernel(conv, inputs, original_inputs)
    x = inputs.double()
    second = _second_moments(x)
    values, vectors = torch.linalg.eigh(second)
    values = values.clamp_min(0)
    values = values + RIDGE * values.mean()
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T
    root_inverse = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    whitened = torch.einsum("oikl,ij->ojkl", weight, root)
    basis = torch.linalg.svd(unfold(whitened, 1), full_matrices=False).U[:, :in_rank]
    first = basis.T @ root_inverse
    core = torch.einsum("ojkl,jr->orkl", whitened, basis)
    reduced = F.conv2d(
        F.conv2d(x, first[:, :, None, None]), core, None, conv.stride, conv.padding, conv.dilation
    )
    values, vectors = torch.linalg.eigh(_second_moments(reduced))
    out_factor = vectors[:, values.argsort(descending=True)[:out_rank]]
    layer = TuckerConv2d(conv, out_rank, in_rank)
    dtype = conv.weight.dtype
    layer.first.weight.copy_(first[:, :, None, None].to(dtype))
    layer.core.weight.copy_(torch.einsum("orkl,oq->qrkl", core, out_factor).to(dtype))
    layer.last.weight.copy_(out_factor[:, :, None, None].to(dtype))
    if conv.bias is not None:
        layer.last.bias.copy_(conv.bias)
    return layer.to(conv.weight.device)


@torch.no_grad()
def corrected_kernel(
    conv: nn.Conv2d, inputs: torch.Tensor, original_inputs: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """argmin_K sum ||K * x~ - W * x||^2 over every output position (least squares on the
    patches, ridge as in the whitening): the dense kernel that undoes the earlier layers' error,
    the first step of asymmetric reconstruction (Zhang et al. TPAMI 2016, eq. 10's target)."""
    weight = conv.weight.detach().double()
    width = weight[0].numel()
    auto = torch.zeros(width, width, dtype=torch.float64)
    cross = torch.zeros(width, width, dtype=torch.float64)
    for part in batch_slices(len(inputs), chunk):
        approximate = _patches(conv, inputs[part].double())
        exact = _patches(conv, original_inputs[part].double())
        auto += approximate.T @ approximate
        cross += exact.T @ approximate
    auto += RIDGE * auto.diagonal().mean() * torch.eye(width, dtype=torch.float64)
    flat = torch.linalg.solve(auto, cross.T @ weight.reshape(len(weight), -1).T).T
    return flat.reshape(weight.shape)


def _patches(conv: nn.Conv2d, tensor: torch.Tensor) -> torch.Tensor:
    """Every output position's receptive field as a row (positions x C_in K K)."""
    patches = F.unfold(tensor, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def _second_moments(tensor: torch.Tensor) -> torch.Tensor:
    """E[v v^T] over every image and position of an NCHW tensor (C x C)."""
    flat = tensor.movedim(1, 0).reshape(tensor.shape[1], -1)
    return flat @ flat.T / flat.shape[1]


def _inputs_of(
    model: nn.Module, conv: nn.Conv2d, images: torch.Tensor, device: torch.device, batch_size: int
) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_pre_hook(lambda _, args: seen.append(args[0].cpu()))
    try:
        for part in batch_slices(len(images), batch_size):
            model(images[part].to(device))
    finally:
        handle.remove()
    return torch.cat(seen)
