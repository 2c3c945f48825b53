"""Clean & Compact (Phan et al., ECCV 2024) as a purify defense plugin: data-free purification that
also compresses, by Tucker-2 rank clipping and pruning plus fine-tuning on synthetic data. The
authors' code is not public; `cleaning.py` says what is reconstructed and how."""

from __future__ import annotations

from torch import nn

from purify_backdoor import (
    Defense,
    DefenseJob,
    above,
    at_least,
    hookimpl,
    options_from_settings,
    settings_from_options,
)
from purify_backdoor.compact.cleaning import (
    BASES,
    FIT_TARGETS,
    LABEL_SOURCES,
    SYNTHESIS_MODELS,
    CleanCompactSettings,
    clean_and_compact,
    dense_equivalent,
)
from purify_backdoor.compact.compact_checkpoint import ADAPTER, SUFFIX
from purify_backdoor.compact.cost import model_cost
from purify_backdoor.compact.ranks import RULES
from purify_backdoor.compact.scaling import STATISTICS
from purify_backdoor.compact.spectrum_figure import spectrum_figure

HELP = {
    "tau_scale": "clip rank components above tau_scale x the mean normalized singular value",
    "threshold": "the mean in that threshold: each layer's own (layer) or all layers' (global)",
    "compression": "parameter compression target of the whole model (1 = no rank pruning)",
    "rank_rule": "per-layer ranks: energy (one singular-value energy share, dense stem) or uniform",
    "bases": "Tucker factors of pruned layers: truncated kernel HOSVD, or fitted to activations",
    "fit_target": "fitted layers reproduce their own kernel (layer) or the unpruned net (network)",
    "synthesis_model": "model the synthetic images are optimised through: compact or original",
    "synthetic": "number of ZeroQ synthetic images",
    "synthesis_iterations": "optimisation steps per synthetic batch",
    "synthesis_lr": "Adam learning rate of the synthetic pixels (logit space)",
    "synthesis_ce": "weight of the cross-entropy towards sampled labels in synthesis",
    "label_source": "fine-tuning labels: sampled in synthesis, or the compact/original model's",
    "soft_labels": "fine-tune on the labelling model's softmax instead of its argmax",
    "adversarial_eps": "L-inf radius of the adversarial copies, in 1/255",
    "adversarial_steps": "PGD steps of the adversarial copies",
    "epochs": "fine-tuning epochs on synthetic + adversarial data (0 = none)",
    "lr": "SGD learning rate of the fine-tuning (cosine-annealed)",
    "batch_size": "fine-tuning batch size",
}
BOUNDS = {
    "tau_scale": above(0),
    "compression": at_least(1),
    "synthetic": at_least(1),
    "synthesis_iterations": at_least(1),
    "synthesis_lr": above(0),
    "synthesis_ce": at_least(0),
    "adversarial_eps": at_least(0),
    "adversarial_steps": at_least(1),
    "epochs": at_least(0),  # 0: clipping (and fitting) alone, no fine-tuning
    "lr": above(0),
    "batch_size": at_least(1),
}


def run(job: DefenseJob) -> nn.Module:
    settings = settings_from_options(CleanCompactSettings, job.options)
    compact, details = clean_and_compact(
        job.model, job.input_size, job.num_classes, settings, job.context
    )
    details["cost"] = {
        "before": model_cost(job.model, job.input_size),
        "after": model_cost(compact, job.input_size),
    }
    job.details["cc"] = details
    figure = spectrum_figure(details["layers"], settings.tau_scale)
    if figure is not None:
        job.figures["spectrum"] = figure
    job.extra_outputs[SUFFIX] = lambda loaded, path: ADAPTER.save(loaded, compact, path)
    return dense_equivalent(compact)


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="cc",
            description="Clean & Compact (ECCV 2024): data-free Tucker-2 purification, compression",
            run=run,
            needs_data=False,
            extra_outputs=(SUFFIX,),
            options=options_from_settings(
                CleanCompactSettings,
                HELP,
                choices={
                    "rank_rule": RULES,
                    "bases": BASES,
                    "fit_target": FIT_TARGETS,
                    "threshold": STATISTICS,
                    "synthesis_model": SYNTHESIS_MODELS,
                    "label_source": LABEL_SOURCES,
                },
                bounds=BOUNDS,
            ),
        )
    )


@hookimpl
def register_adapters(register):
    register(ADAPTER)
