"""C&C's picture for the report: each convolution's mode-1 singular-value spectrum (of its Tucker
core, before scaling, normalized by its largest value) divided by the mean T it was held against
(its own, or all layers'), so the clipping threshold tau_scale is one line for every layer; a
marker shows the rank each layer keeps."""

from __future__ import annotations

from purify_backdoor import Figure, plot_figure


def spectrum_figure(layers: dict[str, dict], tau_scale: float) -> Figure | None:
    spectra = {name: layer["spectrum"] for name, layer in layers.items() if layer.get("spectrum")}
    if not spectra:
        return None

    def draw(figure) -> None:
        axes = figure.subplots()
        for name, spectrum in spectra.items():
            mean = layers[name]["mean"]
            relative = [value / mean if mean > 0 else 0.0 for value in spectrum]
            (line,) = axes.plot(range(1, len(relative) + 1), relative, lw=1, label=name)
            kept = layers[name]["ranks"][0]
            if kept < len(relative):
                axes.plot([kept], [relative[kept - 1]], "o", color=line.get_color(), ms=4)
        axes.axhline(tau_scale, color="black", ls="--", lw=1, label=f"tau_scale = {tau_scale:g}")
        axes.set_yscale("log")
        axes.set_xlabel("rank component (mode 1)", fontsize=8)
        axes.set_ylabel("normalized singular value / T", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.legend(fontsize=5, ncol=2)

    clipped = sum(layer["clipped"]["mode1"] for layer in layers.values())
    caption = (
        "Singular values of each convolution's Tucker core (mode 1, before scaling), relative to "
        "the mean T of the clipping rule: components above the dashed line (tau_scale) are "
        f"clipped to it ({clipped} in all, mode 1); a dot marks the rank a truncated layer keeps."
    )
    return plot_figure(caption, draw, size=(7.0, 4.0))
