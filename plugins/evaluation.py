"""Running every installed evaluator, and the before/after comparison of a defense."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from purify_backdoor.atomic import atomic_write, write_json_atomic
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.data.loading import cache_dir
from purify_backdoor.manager import collect
from purify_backdoor.plugin_types import AttackSpec, EvalJob, RunContext, TriggeredSet


def evaluate_model(
    model: nn.Module,
    test: ImageSet,
    attack: AttackSpec | None,
    context: RunContext,
    reference: nn.Module | None = None,
    triggered: TriggeredSet | None = None,
    reference_logits: torch.Tensor | None = None,
) -> dict[str, float]:
    """All installed evaluators' metrics, merged (later evaluators win on a shared name)."""
    metrics: dict[str, float] = {}
    model.to(context.device)
    if reference is not None:
        reference.to(context.device)
    for entry in collect("evaluator").values():
        job = EvalJob(
            model,
            test,
            attack,
            context,
            reference=reference,
            triggered=triggered,
            reference_logits=reference_logits,
        )
        metrics.update(entry.item.evaluate(job))
    return metrics


# Bumped when the shipped evaluators return other entries, so older cache files are not read.
CACHE_ENTRIES = 2


def cached_evaluation(identity: dict[str, Any], compute: Callable[[], dict]) -> dict[str, float]:
    """Metrics of an unchanged model on unchanged data, read back instead of recomputed: every
    defense run on one checkpoint starts by evaluating it, which on a CPU takes longer than some
    defenses. `identity` must pin everything the metrics depend on (model file digest, data
    fingerprint, attack); the installed evaluators and their versions are added here."""
    evaluators = [[e.item.name, e.package, e.version] for e in collect("evaluator").values()]
    identity = {**identity, "evaluators": evaluators, "entries": CACHE_ENTRIES}
    path = _cache_path(identity, "json")
    if path.exists():
        return json.loads(path.read_text())["metrics"]
    metrics = compute()
    write_json_atomic(path, {"identity": json.loads(_cache_key(identity)), "metrics": metrics})
    return metrics


def cached_logits(identity: dict[str, Any], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The original model's test logits, which every defense run compares its output against
    (functionality, agreement): read back like `cached_evaluation`, keyed by `identity` (model
    digest, test fingerprint, device type)."""
    path = _cache_path({**identity, "logits": True}, "pt")
    if path.exists():
        return torch.load(path, weights_only=True)
    logits = compute()
    atomic_write(path, lambda tmp: torch.save(logits, tmp))
    return logits


def _cache_key(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, default=str)


def _cache_path(identity: dict[str, Any], suffix: str) -> Path:
    digest = hashlib.sha256(_cache_key(identity).encode()).hexdigest()[:32]
    path = cache_dir() / "evaluations" / f"{digest}.{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def defense_effectiveness_rating(before: dict[str, float], after: dict[str, float]) -> float:
    """DER as BackdoorBench defines it: [max(0, dASR) - max(0, dACC) + 1] / 2."""
    asr_drop = max(0.0, before["asr"] - after["asr"])
    acc_drop = max(0.0, before["clean_acc"] - after["clean_acc"])
    return (asr_drop - acc_drop + 1) / 2


PERCENT_METRICS = {"clean_acc", "asr", "robust_acc", "agreement", "der"}


def format_metric(name: str, value: float) -> str:
    if name in PERCENT_METRICS:
        return f"{100 * value:.2f}%"
    if name in ("parameters", "weight_bytes"):
        return f"{int(value):,}"
    return f"{value:.4f}"


def metrics_table(columns: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per metric, one column per model."""
    names = [name for name in _ordered_names(columns)]
    header = ["metric", *columns]
    rows = [
        [
            name,
            *(format_metric(name, col[name]) if name in col else "-" for col in columns.values()),
        ]
        for name in names
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def is_breakdown(name: str) -> bool:
    """Per-class entries (`class_acc/3`) belong to pictures, not to tables of metrics."""
    return "/" in name


def _ordered_names(columns: dict[str, dict[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for column in columns.values():
        for name in column:
            if not is_breakdown(name):
                seen.setdefault(name, None)
    return list(seen)
