"""`purify eval`: one checkpoint's clean accuracy, ASR and the other evaluators' metrics on a data
set, with the original model for functionality and agreement when one is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import write_json_atomic
from purify_backdoor.attack_spec import chosen_attack, spec_record
from purify_backdoor.checkpoints import check_class_count, open_checkpoint
from purify_backdoor.data.loading import open_data
from purify_backdoor.evaluation import evaluate_model
from purify_backdoor.input_check import check_clean_accuracy
from purify_backdoor.input_overrides import InputOverride, apply_override
from purify_backdoor.plugin_types import RunContext


@dataclass(frozen=True)
class EvalRequest:
    model_path: Path
    data: Path
    attack: str | None = None
    reference: Path | None = None
    json_out: Path | None = None
    format: str = "auto"
    arch: str | None = None
    trust_checkpoint: bool = False
    override: InputOverride = InputOverride()
    accept_low_accuracy: bool = False
    trojai_round: str | None = None


def evaluate_checkpoint(request: EvalRequest, context: RunContext) -> dict[str, float]:
    """The metrics of the model (written atomically to `json_out` with what was measured, when
    asked). The test split is evaluated, or the whole data set when it has no split."""
    load = {
        "format": request.format,
        "trust": request.trust_checkpoint,
        "arch": request.arch,
        "trojai_round": request.trojai_round,
    }
    loaded = apply_override(open_checkpoint(request.model_path, **load)[1], request.override)
    original = None
    if request.reference:
        original = apply_override(open_checkpoint(request.reference, **load)[1], request.override)
        original = original.model
    splits = open_data(request.data, quiet=context.quiet)
    test = splits.test or splits.train
    check_class_count(test.num_classes, loaded.convention.num_classes, request.data)
    check = check_clean_accuracy(
        loaded.model, test, context.device, context.seed, request.accept_low_accuracy
    )
    spec = chosen_attack(request.attack, loaded.attack)
    metrics = evaluate_model(
        loaded.model, test, spec, context, reference=original, triggered=loaded.triggered
    )
    if request.json_out:
        record: dict[str, Any] = {
            "model": str(request.model_path),
            "data": str(request.data),
            "attack": spec_record(spec) if spec else None,
            "metrics": metrics,
            "input_check": check,
        }
        write_json_atomic(request.json_out, record)
    return metrics
