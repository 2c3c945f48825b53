"""BAERASER's picture for the report: the trigger recovered for every label in every form (one
sample of its generator), with its held-out success and anomaly index, the pool's labels framed:
a target-label detector a person can read at a glance."""

from __future__ import annotations

import torch

from purify_backdoor import Figure, plot_figure
from purify_backdoor.unlearn.generator import TriggerGenerator
from purify_backdoor.unlearn.recovery import sample_triggers


def trigger_figure(
    scanned: dict[int, dict[str, TriggerGenerator]], scan: dict, device: torch.device
) -> Figure | None:
    labels = sorted(scanned)
    forms = sorted({form for nets in scanned.values() for form in nets})
    generator = torch.Generator().manual_seed(0)
    samples = {
        (label, form): sample_triggers(net, 1, generator, device)[0].permute(1, 2, 0).cpu()
        for label in labels
        for form, net in scanned[label].items()
    }
    kept = set(scan["kept_labels"])

    def draw(figure) -> None:
        grid = figure.subplots(len(forms), len(labels), squeeze=False)
        for row, form in enumerate(forms):
            for column, label in enumerate(labels):
                axes = grid[row][column]
                axes.imshow(samples[(label, form)].clamp(0, 1).numpy(), interpolation="nearest")
                entry = scan["labels"][str(label)]
                rate = next(iter(entry["success"][form].values()))
                index = entry["anomaly_index"][form]
                axes.set_title(f"{label}: {rate:.0%}\nidx {index:.1f}", fontsize=7)
                axes.set_xticks([])
                axes.set_yticks([])
                if label in kept and entry["form"] == form:
                    for spine in axes.spines.values():
                        spine.set_edgecolor("tab:red")
                        spine.set_linewidth(2.5)
            grid[row][0].set_ylabel(form, fontsize=8)

    pool = ", ".join(map(str, sorted(kept))) or "none"
    caption = (
        "The trigger recovered for each label (columns) in each form (rows: the patch at random "
        "places, the image-sized additive pattern, the patch at the corners), one sample of "
        "its generator, titled with the label, its "
        f"success on held-out clean images and its anomaly index in its form. Pool: {pool} "
        "(framed in red)."
    )
    return plot_figure(caption, draw, size=(max(6.0, 1.0 * len(labels)), 1.6 * len(forms) + 0.6))
