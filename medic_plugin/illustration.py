"""MEDIC's Figure 2 for the report: at one cloned layer, the teacher's activation on a clean
image and on a triggered one, their difference, and the importance weights (eqs. 2-4) the clone
was trained with on the clean image. The defense never sees triggered images; the host hands one
over only to draw this picture after the model is purified. The layer shown is the one where the
trigger moves the teacher most (mean |difference| / sigma); the deepest cloned layer when no
trigger is known."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from purify_backdoor import Figure, ImageSet, plot_figure, to_tensor
from purify_backdoor.medic.layers import ActivationRecorder

Statistics = list[tuple[torch.Tensor, torch.Tensor]]


def channel_profile(tensor: torch.Tensor, axis: int) -> torch.Tensor:
    """One value per channel: the mean over every other axis of the single image's output."""
    moved = tensor[0].movedim(axis - 1, 0)
    return moved.reshape(moved.shape[0], -1).mean(1)


def illustrate(
    teacher: nn.Module,
    layers: list[tuple[str, nn.Module]],
    axes: list[int],
    stats: Statistics,
    weights_of: Callable,
    device: torch.device,
) -> Callable[[ImageSet, ImageSet | None], dict[str, Figure]]:
    """A drawer for the host: (clean images, triggered images or None) -> named figures.
    `weights_of(teacher, recorder, batch, labels)` is the training loop's importance."""

    def draw(clean: ImageSet, triggered: ImageSet | None) -> dict[str, Figure]:
        recorder = ActivationRecorder([module for _, module in layers])
        try:
            image = to_tensor(clean.images[:1]).to(device)
            label = torch.from_numpy(clean.labels[:1]).to(device)
            clean_acts, clean_weights = weights_of(teacher, recorder, image, label)
            trig_acts = None
            if triggered is not None:
                with torch.no_grad():
                    teacher(to_tensor(triggered.images[:1]).to(device))
                trig_acts = recorder.take()
        finally:
            recorder.remove()
        shift = [
            float(((t - c).abs() / sigma).mean())
            for t, c, (_, sigma) in zip(trig_acts or clean_acts, clean_acts, stats, strict=True)
        ]
        chosen = max(range(len(layers)), key=shift.__getitem__) if trig_acts else len(layers) - 1
        axis = axes[chosen]
        name = layers[chosen][0]
        profile = {
            "clean image": channel_profile(clean_acts[chosen], axis),
            "importance (clean image)": channel_profile(clean_weights[chosen], axis),
        }
        if trig_acts is not None:
            profile["triggered image"] = channel_profile(trig_acts[chosen], axis)
            profile["triggered - clean"] = profile["triggered image"] - profile["clean image"]
        order = ["clean image", "triggered image", "triggered - clean", "importance (clean image)"]
        panels = [(title, profile[title].cpu()) for title in order if title in profile]

        def plot(figure) -> None:
            rows = figure.subplots(len(panels) + (trig_acts is not None), 1, squeeze=False)[:, 0]
            for row, (title, values) in zip(rows, panels, strict=False):
                row.bar(range(len(values)), values.numpy(), width=1.0)
                row.set_title(f"{title}: {name}", fontsize=9)
                row.tick_params(labelsize=7)
            rows[len(panels) - 1].set_xlabel("channel", fontsize=8)
            if trig_acts is not None:
                rows[-1].bar(range(len(shift)), shift, color="tab:red")
                rows[-1].set_title("mean |triggered - clean| / sigma, per cloned layer", fontsize=9)
                rows[-1].set_xticks(
                    range(len(shift)), [n for n, _ in layers], rotation=60, ha="right", fontsize=6
                )

        caption = (
            f"The teacher at {name}, per channel (mean over positions): its activation on one "
            f"clean test image"
            + (", on the same image with the trigger, their difference" if trig_acts else "")
            + ", and the importance weights MEDIC gave the clean image (eqs. 2-4)"
            + ("; below, how far the trigger moves each cloned layer" if trig_acts else "")
            + " (after MEDIC's Figure 2)."
        )
        figure = plot_figure(caption, plot, size=(8.0, 2.0 * (len(panels) + 1)))
        return {} if figure is None else {"activations": figure}

    return draw
