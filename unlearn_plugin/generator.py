"""BAERASER's trigger generator (MESA architecture, as in the authors' code): noise z ~ U[0,1]^64 in
four chunks, each fed into the next fully connected layer beside the previous layer's output, batch
norm and leaky ReLU, sigmoid output. Three trigger forms: `patch` (the authors' code: a p x p patch
pasted at one random place per batch), `additive` (the issue's x + G(z), an image-sized pattern
bounded by eps in L-inf, for blended/SIG-like triggers) and `corner` (the patch pasted at one of
the image's four corners, drawn per image: for triggers stamped at a fixed corner after
augmentation, which fire there only and which a patch at random places almost never hits).


Recovery trains one generator per candidate label; `TriggerGenerators` holds G of them as stacked
weights, so all labels train in one batched forward and backward through the shared, frozen victim
(G small matrix products become one `baddbmm`). `unstack` hands back the single generators."""

from __future__ import annotations

import math

import torch
from torch import nn

NOISE_SIZE = 64
FORMS = ("patch", "additive", "corner")
PATCH_FORMS = ("patch", "corner")  # forms whose triggers are pasted patches


def place_grid(image_size: tuple[int, int], trigger_shape: tuple[int, int, int]) -> tuple[int, int]:
    """Rows and columns a patch's top-left corner can take (1 x 1 for an image-sized trigger)."""
    return image_size[0] - trigger_shape[1] + 1, image_size[1] - trigger_shape[2] + 1


def corner_places(grid: tuple[int, int]) -> torch.Tensor:
    """The flat places of the four corners: top-left, top-right, bottom-left, bottom-right."""
    rows, columns = grid
    return torch.tensor([0, columns - 1, (rows - 1) * columns, rows * columns - 1])


class TriggerGenerator(nn.Module):
    """`form` says how its triggers are stamped (see `apply_trigger`)."""

    def __init__(
        self, trigger_shape: tuple[int, int, int], hidden: int, form: str = "patch",
        image_size: tuple[int, int] = (32, 32),
    ) -> None:  # fmt: skip
        super().__init__()
        self.trigger_shape = trigger_shape
        self.form = form
        self.image_size = image_size
        chunk = NOISE_SIZE // 4
        out_size = trigger_shape[0] * trigger_shape[1] * trigger_shape[2]

        def layer(inputs: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(inputs, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)
            )

        self.layers = nn.ModuleList([layer(chunk), layer(hidden + chunk), layer(hidden + chunk)])
        self.out = nn.Linear(hidden + chunk, out_size)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        chunks = noise.chunk(4, dim=1)
        hidden = self.layers[0](chunks[0])
        for layer, chunk in zip(self.layers[1:], chunks[1:3], strict=True):
            hidden = layer(torch.cat([hidden, chunk], 1))
        out = self.out(torch.cat([hidden, chunks[3]], 1))
        return torch.sigmoid(out).view(-1, *self.trigger_shape)

    def places(self, count: int, generator: torch.Generator, each: bool = False) -> torch.Tensor:
        """Where `count` triggers go: one uniform place for all of them, or one per trigger (a
        corner trigger always one per trigger)."""
        grid = place_grid(self.image_size, self.trigger_shape)
        places = sample_places(grid, 1, count, generator, each, self.form)
        return places[0].to(self.out.weight.device)


class GroupedLinear(nn.Module):
    """G independent `nn.Linear` layers, each with nn.Linear's initialisation: (G, B, in) -> (G, B,
    out) as one batched matrix product."""

    def __init__(self, groups: int, inputs: int, outputs: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1 / math.sqrt(inputs)
        self.weight = nn.Parameter(torch.empty(groups, outputs, inputs).uniform_(-bound, bound))
        self.bias = (
            nn.Parameter(torch.empty(groups, outputs).uniform_(-bound, bound)) if bias else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias[:, None], x, self.weight.transpose(1, 2))


class GroupedBatchNorm(nn.BatchNorm1d):
    """G independent BatchNorm1d layers: (G, B, F) seen as (B, G * F), so each group's statistics
    are its own batch's, as when the generators train apart."""

    def __init__(self, groups: int, features: int) -> None:
        super().__init__(groups * features)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups, batch, features = x.shape
        flat = super().forward(x.transpose(0, 1).reshape(batch, groups * features))
        return flat.view(batch, groups, features).transpose(0, 1)


class TriggerGenerators(nn.Module):
    """G `TriggerGenerator`s of one form as stacked weights: noise (G, B, 64) -> (G, B, *shape)."""

    def __init__(
        self, count: int, trigger_shape: tuple[int, int, int], hidden: int, form: str,
        image_size: tuple[int, int],
    ) -> None:  # fmt: skip
        super().__init__()
        self.count, self.trigger_shape, self.hidden, self.form = count, trigger_shape, hidden, form
        self.image_size = image_size
        self.grid = place_grid(image_size, trigger_shape)
        chunk = NOISE_SIZE // 4
        out_size = trigger_shape[0] * trigger_shape[1] * trigger_shape[2]
        widths = (chunk, hidden + chunk, hidden + chunk)
        self.linears = nn.ModuleList(GroupedLinear(count, w, hidden) for w in widths)
        self.norms = nn.ModuleList(GroupedBatchNorm(count, hidden) for _ in widths)
        self.out = GroupedLinear(count, hidden + chunk, out_size)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        chunks = noise.chunk(4, dim=2)
        hidden = None
        for linear, norm, chunk in zip(self.linears, self.norms, chunks[:3], strict=True):
            inputs = chunk if hidden is None else torch.cat([hidden, chunk], 2)
            hidden = nn.functional.leaky_relu(norm(linear(inputs)), 0.2)
        out = self.out(torch.cat([hidden, chunks[3]], 2))
        return torch.sigmoid(out).view(self.count, -1, *self.trigger_shape)

    def places(self, count: int, generator: torch.Generator, each: bool = False) -> torch.Tensor:
        """(G, count) places: one uniform place per generator, as if each trained apart, or
        one per trigger (a corner trigger always one per trigger)."""
        places = sample_places(self.grid, self.count, count, generator, each, self.form)
        return places.to(self.out.weight.device)

    def unstack(self) -> list[TriggerGenerator]:
        """The G generators as separate modules, in the same mode, with equal outputs."""
        nets = []
        for g in range(self.count):
            net = TriggerGenerator(self.trigger_shape, self.hidden, self.form, self.image_size)
            features = slice(g * self.hidden, (g + 1) * self.hidden)
            with torch.no_grad():
                for (linear, norm, _), grouped, batch_norm in zip(
                    net.layers, self.linears, self.norms, strict=True
                ):
                    linear.weight.copy_(grouped.weight[g])
                    linear.bias.copy_(grouped.bias[g])
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        getattr(norm, name).copy_(getattr(batch_norm, name)[features])
                    norm.num_batches_tracked.copy_(batch_norm.num_batches_tracked)
                net.out.weight.copy_(self.out.weight[g])
                net.out.bias.copy_(self.out.bias[g])
            nets.append(net.to(self.out.weight.device).train(self.training))
        return nets


def sample_places(
    grid: tuple[int, int], groups: int, count: int, generator: torch.Generator,
    each: bool = False, form: str = "patch",
) -> torch.Tensor:  # fmt: skip
    """(groups, count) flat places (row * columns + column): one uniform place per group, shared
    by its `count` images (the authors' code draws one place per batch), or with `each` one per
    image (scoring: the mean over places, not the luck of a few). A corner trigger takes one of
    the four corners per image: with four places only, every batch then covers each of them."""
    if form == "corner":
        corners = corner_places(grid)
        return corners[torch.randint(0, len(corners), (groups, count), generator=generator)]
    place = torch.randint(0, grid[0] * grid[1], (groups, count if each else 1), generator=generator)
    return place.expand(groups, count)


def apply_trigger(
    images: torch.Tensor, triggers: torch.Tensor, mode: str, eps: float,
    places: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Stamp one trigger per image: `patch` or `corner` with its top-left corner at `places` (flat
    indices, one per image), `additive` as x + eps * (2 t - 1), clipped to [0, 1]. Triggers of shape
    (G, B, ...) and places (G, B) stamp the same B images once per group: (G, B, C, H, W)."""
    if mode == "additive":
        return (images + eps * (2 * triggers - 1)).clamp(0, 1)
    grouped = triggers.dim() == images.dim() + 1
    patches = triggers if grouped else triggers[None]
    places = places if grouped else places[None]
    groups, batch, _, size, _ = patches.shape
    columns = images.shape[3] - size + 1
    out = images.expand(groups, *images.shape).clone()
    group = torch.arange(groups, device=images.device)[:, None].expand(groups, batch)
    sample = torch.arange(batch, device=images.device)[None].expand(groups, batch)
    rows, cols = places // columns, places % columns
    for i in range(size):
        for j in range(size):
            out[group, sample, :, rows + i, cols + j] = patches[:, :, :, i, j]
    return out if grouped else out[0]


def sample_noise(
    count: int, generator: torch.Generator, device: torch.device, groups: int | None = None
) -> torch.Tensor:
    """U[0,1]^64 noise: (count, 64), or (groups, count, 64) for stacked generators."""
    shape = (count, NOISE_SIZE) if groups is None else (groups, count, NOISE_SIZE)
    return torch.rand(*shape, generator=generator).to(device)
