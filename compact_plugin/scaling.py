"""C&C step 2: rank-level scaling of the Tucker core. Rank components whose normalized singular
value is outsized are clipped, in the mode-1 and then the mode-2 matricization of the core.

The issue writes the factor as min(tau_scale * s_sigma / T, 1). C&C's code is not public and its
paper body could not be read (../shared/reference/cc_baeraser_clp.md, section 3.2), so this is our
reading, the only one under which components below the threshold are left unchanged and a smaller
tau_scale clips more: with s_r = sigma_r / sum(sigma) the normalized singular value of rank r (the
share of its mode, which puts every layer in the same range, the paper's footnote 1) and T = mean_r
s_r the per-mode statistic, rank r is scaled by min(tau_scale * T / s_r, 1): clipped to tau_scale
times the mean share."""

from __future__ import annotations

import torch

from purify_backdoor.compact.tucker import unfold


def normalized_singular_values(singular: torch.Tensor) -> torch.Tensor:
    total = singular.sum()
    return singular / total if total > 0 else torch.zeros_like(singular)


def clip_factors(singular: torch.Tensor, tau_scale: float) -> torch.Tensor:
    """Per-rank factors: 1 at or below the threshold tau_scale * mean share, else the factor that
    brings the rank exactly to it."""
    share = normalized_singular_values(singular)
    threshold = tau_scale * share.mean()
    factors = torch.ones_like(share)
    above = share > threshold
    factors[above] = threshold / share[above]
    return factors


def scale_core(core: torch.Tensor, tau_scale: float) -> tuple[torch.Tensor, dict[str, int]]:
    """Scale G_(1) rows by their clip factors, then G_(2) rows by theirs. For a HOSVD core the
    row norms of G_(n) are the singular values of W_(n) (all-orthogonality), so they are used as
    the singular values."""
    clipped = {}
    for mode in (0, 1):
        factors = clip_factors(unfold(core, mode).norm(dim=1), tau_scale)
        shape = [1] * core.dim()
        shape[mode] = -1
        core = core * factors.view(shape).to(core.dtype)
        clipped[f"mode{mode + 1}"] = int((factors < 1).sum())
    return core, clipped
