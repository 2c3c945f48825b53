"""C&C step 2: rank-level scaling of the Tucker core. Rank components whose normalized singular
value is outsized are clipped, first in the core's mode-1 matricization, then in its mode-2 one.

The slides write the factor as min(tau_scale * s_sigma / T, 1). C&C's code is not public and its
paper body could not be read (../shared/reference/cc_baeraser_clp.md, section 3.2), so this is our
reading, the only one under which components below the threshold are left unchanged and a smaller
tau_scale clips more: with s_r = sigma_r / max(sigma) the normalized singular value of rank r
(footnote 1: it puts every layer in the same range, (0, 1]) and T the mean normalized value, rank r
is scaled by min(tau_scale * T / s_r, 1): clipped to tau_scale times the mean. T is either each
layer's own mean (`layer`, the default) or one mean over every layer's components (`global`,
the footnote's "one threshold for all layers" taken literally).

Mode 2 is scaled by the singular values of the core's mode-2 matricization AFTER mode-1 scaling:
mode-1 scaling breaks the HOSVD core's all-orthogonality, so the core is first rotated onto its
mode-2 singular vectors (the input factor takes the inverse rotation; the kernel is unchanged)."""

from __future__ import annotations

import torch

from purify_backdoor.compact.tucker import Tucker2, unfold

STATISTICS = ("layer", "global")


def normalized_singular_values(singular: torch.Tensor) -> torch.Tensor:
    """sigma / max(sigma): every layer's spectrum in (0, 1] (all zeros for a dead layer)."""
    top = singular.max() if singular.numel() else singular.new_zeros(())
    return singular / top if top > 0 else torch.zeros_like(singular)


def clip_factors(
    singular: torch.Tensor, tau_scale: float, mean: float | None = None
) -> torch.Tensor:
    """Per-rank factors: 1 at or below the threshold tau_scale * T, else the factor that brings
    the rank exactly to it. T is `mean` when given (a statistic across layers), else this
    spectrum's own mean normalized value."""
    share = normalized_singular_values(singular)
    threshold = tau_scale * (share.mean() if mean is None else mean)
    factors = torch.ones_like(share)
    above = share > threshold
    factors[above] = threshold / share[above]
    return factors


def rotate_to_mode2_singular_vectors(decomposition: Tucker2) -> tuple[Tucker2, torch.Tensor]:
    """The same kernel with the core's mode-2 rows orthogonal (G x2 P^T, U2 P for G_(2) = P S
    Q^T), rows in order of decreasing singular value, and those singular values."""
    core = decomposition.core
    rotation, singular, _ = torch.linalg.svd(unfold(core, 1), full_matrices=True)
    padded = singular.new_zeros(core.shape[1])
    padded[: len(singular)] = singular
    rotated = torch.einsum("rskl,st->rtkl", core, rotation)
    return Tucker2(rotated, decomposition.out_factor, decomposition.in_factor @ rotation), padded


def scale_mode(core: torch.Tensor, mode: int, factors: torch.Tensor) -> torch.Tensor:
    shape = [1] * core.dim()
    shape[mode] = -1
    return core * factors.view(shape).to(core.dtype)


def scale_cores(
    decompositions: dict[str, Tucker2], tau_scale: float, statistic: str = "layer"
) -> tuple[dict[str, Tucker2], dict[str, dict]]:
    """Mode-1 then mode-2 clipping of every layer's core. Per layer it reports the components
    clipped in each mode, mode 1's normalized spectrum before scaling and the T it was held
    against. A HOSVD core's G_(1) row norms are the singular values of W_(1)
    (all-orthogonality), so they serve as mode 1's spectrum."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown threshold statistic {statistic!r}: choose one of {STATISTICS}")
    mode1 = {name: unfold(d.core, 0).norm(dim=1) for name, d in decompositions.items()}
    means = _means(mode1, statistic)
    report, scaled = {}, {}
    for name, d in decompositions.items():
        factors = clip_factors(mode1[name], tau_scale, means[name])
        scaled[name] = Tucker2(scale_mode(d.core, 0, factors), d.out_factor, d.in_factor)
        report[name] = {
            "clipped": {"mode1": int((factors < 1).sum())},
            "spectrum": [round(float(v), 6) for v in normalized_singular_values(mode1[name])],
            "mean": round(means[name], 6),
        }
    mode2 = {}
    for name, d in scaled.items():
        scaled[name], mode2[name] = rotate_to_mode2_singular_vectors(d)
    means = _means(mode2, statistic)
    for name, d in scaled.items():
        factors = clip_factors(mode2[name], tau_scale, means[name])
        scaled[name] = Tucker2(scale_mode(d.core, 1, factors), d.out_factor, d.in_factor)
        report[name]["clipped"]["mode2"] = int((factors < 1).sum())
    return scaled, report


def _means(spectra: dict[str, torch.Tensor], statistic: str) -> dict[str, float]:
    """T per layer: its own mean normalized singular value, or the mean over all layers."""
    normalized = {name: normalized_singular_values(s) for name, s in spectra.items()}
    if statistic == "global" and normalized:
        mean = float(torch.cat(list(normalized.values())).mean())
        return dict.fromkeys(normalized, mean)
    return {name: float(s.mean()) for name, s in normalized.items()}
