"""The stages of one defense run, shared by `defend()` (a model and arrays in memory) and
`purify_checkpoint` (files): check the input, measure it, run the defense, judge the result,
measure it again, draw what the report shows, and assemble the report. Each stage is a function
of what the earlier ones returned, so each can be called and tested alone."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from purify_backdoor.atomic import write_json_atomic
from purify_backdoor.attack_spec import spec_record
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.errors import PurifyError
from purify_backdoor.evaluation import (
    cached_evaluation,
    cached_logits,
    defense_effectiveness_rating,
    evaluate_model,
)
from purify_backdoor.figures import MATPLOTLIB_MISSING, Figure, matplotlib_available
from purify_backdoor.input_check import check_clean_accuracy, check_input_convention
from purify_backdoor.manager import Registered
from purify_backdoor.plugin_types import (
    AttackSpec,
    DefenseJob,
    LoadedModel,
    RunContext,
    TriggeredSet,
)
from purify_backdoor.report import build_report
from purify_backdoor.report_pictures import breakdown, strip, strip_examples
from purify_backdoor.runtime import seed_everything
from purify_backdoor.training import predict_logits

PURIFIED, UNCHANGED, BROKEN = "purified", "unchanged", "broken"
DEFENSE_TIMES = "defense_time_s.json"  # in the work folder: the time of each interrupted part


@dataclass(frozen=True)
class DefenderData:
    """What the defender holds: clean images to purify with (None for a data-free defense), and
    test images to measure the result on (None when there are none). `clean_indices` say which
    training images were drawn, when they were drawn from a larger set."""

    clean: ImageSet | None
    test: ImageSet | None
    clean_indices: np.ndarray | None = None

    def record(self, source: str | None) -> dict[str, Any]:
        return {
            "path": source,
            "clean_images": None if self.clean is None else len(self.clean),
            "clean_indices": None if self.clean_indices is None else self.clean_indices.tolist(),
            "test_images": None if self.test is None else len(self.test),
        }


@dataclass(frozen=True)
class Baseline:
    """The input as the defense found it: a frozen copy to compare with, its metrics on the test
    images and its logits there (the evaluators compare the result against them)."""

    original: nn.Module
    metrics: dict[str, float] | None
    reference_logits: torch.Tensor | None


@dataclass
class DefenseOutcome:
    """What the defense returned, the job it filled in, and the time of each part of the run (an
    interrupted run resumed with --resume has several)."""

    job: DefenseJob
    model: nn.Module
    times: list[float]


@dataclass(frozen=True)
class Verdict:
    """`outcome`: purified, unchanged (the defense found nothing to remove) or broken (it left the
    model near chance on clean images); `status` is what the report says (a defense names its
    own unchanged status, e.g. "no trigger found")."""

    outcome: str
    status: str
    reason: str | None
    output_check: dict[str, Any] | None = None


@dataclass
class DefenseResult:
    """Everything one run of the stages produced, from which the report is assembled."""

    entry: Registered
    options: dict[str, Any]
    loaded: LoadedModel
    data: DefenderData
    attack: AttackSpec | None
    context: RunContext
    input_check: dict[str, Any] | None
    baseline: Baseline
    outcome: DefenseOutcome
    verdict: Verdict
    metrics: dict[str, Any] | None
    pictures: dict[str, Any] | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    figure_notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> nn.Module:
        return self.outcome.model

    def report(
        self,
        input_record: dict[str, Any],
        output: dict[str, Any],
        extra_outputs: list[dict[str, Any]],
        data_source: str | None,
        wall_time_s: float,
    ) -> dict[str, Any]:
        """The JSON report: what the file pipeline writes beside its output, and what `defend()`
        returns, with the file records where they apply."""
        loaded = self.loaded
        return build_report(
            input=input_record
            | {"format": loaded.format, "arch": loaded.arch}
            | {"serialization": serialization(loaded.legacy)}
            | {"convention": loaded.convention.as_record(), "check": self.input_check},
            output=output,
            extra_outputs=extra_outputs,
            status=self.verdict.status,
            status_reason=self.verdict.reason,
            plugin={
                "name": self.entry.item.name,
                "package": self.entry.package,
                "version": self.entry.version,
                "options": self.options,
            },
            seed=self.context.seed,
            device=str(self.context.device),
            data=self.data.record(data_source),
            attack=None if self.attack is None else spec_record(self.attack),
            metrics=self.metrics,
            details=self.outcome.job.details,
            pictures=self.pictures,
            figures={name: figure.as_record() for name, figure in self.figures.items()},
            figure_notes=self.figure_notes,
            defense_time_s=sum(self.outcome.times),
            defense_time_parts_s=self.outcome.times,
            wall_time_s=wall_time_s,
        )


def check_input(
    model: nn.Module,
    data: DefenderData,
    context: RunContext,
    accept_low: bool,
    recorded: float | None = None,
) -> dict[str, Any] | None:
    """The model's accuracy on a few hundred clean images (test images first), before any work:
    near chance, or far below what another standard input convention scores (or, with
    `recorded`, the checkpoint's own accuracy, close to which another convention comes), stops
    the run, since the input convention is then probably wrong. A measure far below `recorded`
    that no convention explains is a warning, on stderr and in the record."""
    checked = data.test if data.test is not None else data.clean
    if checked is None:
        return None
    record = check_input_convention(
        model, checked, context.device, context.seed, accept_low, recorded
    )
    if record["warning"]:
        context.log(f"Warning: {record['warning']}")
    return record


def measure_before(
    loaded: LoadedModel,
    data: DefenderData,
    attack: AttackSpec | None,
    context: RunContext,
    identity: dict[str, Any] | None = None,
) -> Baseline:
    """The input's metrics on the test images. With an `identity` (the model file's digest and
    format) they are cached across runs; a model in memory has none and is measured afresh."""
    original = frozen_copy(loaded.model)
    if data.test is None:
        return Baseline(original, None, None)
    test = data.test

    def metrics() -> dict[str, float]:
        return evaluate_model(original, test, attack, context, triggered=loaded.triggered)

    def logits() -> torch.Tensor:
        return predict_logits(original, test.images, context.device)

    if identity is None:
        return Baseline(original, metrics(), logits())
    identity = identity | {"test": test.fingerprint(), "device": context.device.type}
    attack_record = None if attack is None else spec_record(attack)
    before = cached_evaluation(identity | {"attack": attack_record}, metrics)
    return Baseline(original, before, cached_logits(identity, logits))


def run_defense(
    entry: Registered,
    options: dict[str, Any],
    loaded: LoadedModel,
    data: DefenderData,
    context: RunContext,
) -> DefenseOutcome:
    """Run the defense on `loaded.model` (which it may change in place). The random state is
    seeded afresh first, so the result depends on the seed, the weights and the data, and not
    on how the weights were loaded (building a network from a file draws from it)."""
    job = DefenseJob(
        model=loaded.model,
        clean=data.clean,
        num_classes=loaded.convention.num_classes,
        options=options,
        context=context,
        input_size=loaded.convention.size,
        arch=loaded.arch,
    )
    workdir = context.workdir
    if workdir is not None:
        workdir.mkdir(exist_ok=True)
    earlier = earlier_defense_times(workdir) if context.resume and workdir else []
    seed_everything(context.seed)
    started = time.perf_counter()
    try:
        purified = entry.item.run(job).eval()
    except BaseException:  # Ctrl-C or an error: the next --resume adds this part's time
        if workdir is not None:
            write_json_atomic(workdir / DEFENSE_TIMES, [*earlier, time.perf_counter() - started])
        raise
    return DefenseOutcome(job, purified, [*earlier, time.perf_counter() - started])


def judge(
    outcome: DefenseOutcome,
    baseline: Baseline,
    data: DefenderData,
    context: RunContext,
    accept_low: bool,
    defense: str,
) -> Verdict:
    """Whether the run purified the model: a defense that says it left the model unchanged must
    have, and one that hands back the weights it was given left it unchanged whatever it says
    (0 epochs, a learning rate of 0, nothing pruned); a model with non-finite weights is an
    error; one near chance on clean images is `broken` (unless `accept_low`)."""
    job = outcome.job
    if job.unchanged:
        check_unchanged(baseline.original, outcome.model, defense)
        status, reason = job.unchanged
        return Verdict(UNCHANGED, status, reason)
    if not changed_tensors(baseline.original, outcome.model):
        return Verdict(UNCHANGED, UNCHANGED, "the defense returned the weights it was given")
    probe = data.clean if data.clean is not None else data.test
    check_finite_model(
        outcome.model, defense, None if probe is None else probe.images[:32], context.device
    )
    checked = data.test if data.test is not None else data.clean
    if checked is None:
        return Verdict(PURIFIED, PURIFIED, None)
    check = check_clean_accuracy(outcome.model, checked, context.device, context.seed, True)
    if check["low"] and not accept_low:
        return Verdict(BROKEN, BROKEN, broken_reason(check), check)
    return Verdict(PURIFIED, PURIFIED, None, check)


def measure_after(
    outcome: DefenseOutcome,
    verdict: Verdict,
    baseline: Baseline,
    loaded: LoadedModel,
    data: DefenderData,
    attack: AttackSpec | None,
    context: RunContext,
) -> dict[str, Any] | None:
    """Before and after on the test images, and the DER when the attack is known; an unchanged
    model scores as the input did."""
    if data.test is None or baseline.metrics is None:
        return None
    before = baseline.metrics
    after = dict(before)
    if verdict.outcome != UNCHANGED:
        after = evaluate_model(
            outcome.model,
            data.test,
            attack,
            context,
            reference=baseline.original,
            triggered=loaded.triggered,
            reference_logits=baseline.reference_logits,
        )
    metrics: dict[str, Any] = {"before": before, "after": after}
    if "asr" in before:
        metrics["der"] = defense_effectiveness_rating(before, after)
    return metrics


def draw(result: DefenseResult) -> None:
    """The report's pictures: per-class accuracy and triggered destinations before and after,
    the example strip, and the defense's own figures. A picture that fails to draw is a note,
    never the loss of a purified model."""
    figures: dict[str, Figure] = {}
    test, loaded = result.data.test, result.loaded
    if test is not None and result.metrics is not None:
        result.pictures = _pictures(result, test)
        figures, note = _illustrations(result.outcome.job, test, result.attack, loaded.triggered)
        result.figure_notes += [note] if note else []
    result.figures = result.outcome.job.figures | figures


def _pictures(result: DefenseResult, test: ImageSet) -> dict[str, Any]:
    attack, metrics = result.attack, result.metrics or {}
    examples = strip_examples(test, attack, result.loaded.triggered)
    target = None if attack is None or attack.options["all_to_all"] else attack.options["target"]
    models = {"before": result.baseline.original, "after": result.model}
    return {
        "classes": list(test.classes),
        "target": target,
        "before": breakdown(metrics["before"], test.num_classes),
        "after": breakdown(metrics["after"], test.num_classes),
        "strip": strip(models, examples, result.context),
    }


def _illustrations(
    job: DefenseJob,
    test: ImageSet,
    attack: AttackSpec | None,
    triggered: TriggeredSet | None,
) -> tuple[dict[str, Figure], str | None]:
    """The defense's pictures that need a triggered image (see DefenseJob.illustrate)."""
    if job.illustrate is None:
        return {}, None
    clean, stamped = strip_examples(test, attack, triggered)
    if attack is None:
        stamped = None  # a stored triggered image is not the same image as the clean one
    try:
        return job.illustrate(clean, stamped), None
    except Exception as error:  # noqa: BLE001 - a plugin's drawing code must not cost the run
        return {}, f"the defense's pictures could not be drawn ({type(error).__name__}: {error})"


def run_stages(
    entry: Registered,
    options: dict[str, Any],
    loaded: LoadedModel,
    data: DefenderData,
    attack: AttackSpec | None,
    context: RunContext,
    *,
    accept_low: bool = False,
    identity: dict[str, Any] | None = None,
    pictures: bool = True,
) -> DefenseResult:
    """Input check, before-metrics, defense, verdict, after-metrics and pictures, in that order:
    the core of every run. `loaded.model` is the defense's to change; `context.workdir` holds
    its resumable state."""
    check_finite_input(loaded.model)
    input_check = check_input(loaded.model, data, context, accept_low, loaded.recorded_accuracy)
    baseline = measure_before(loaded, data, attack, context, identity)
    outcome = run_defense(entry, options, loaded, data, context)
    verdict = judge(outcome, baseline, data, context, accept_low, entry.item.name)
    metrics = measure_after(outcome, verdict, baseline, loaded, data, attack, context)
    result = DefenseResult(
        entry, options, loaded, data, attack, context, input_check, baseline, outcome, verdict,
        metrics,
    )  # fmt: skip
    if not matplotlib_available():
        result.figure_notes = [f"No plots: {MATPLOTLIB_MISSING}."]
    if pictures:
        draw(result)
    return result


def earlier_defense_times(workdir: Path) -> list[float]:
    """The defense time of each earlier, interrupted part of a resumed run, so the report's time
    is the whole run's (with the work redone after the last saved step), not its last part's."""
    path = workdir / DEFENSE_TIMES
    if not path.exists():
        return []
    parts = json.loads(path.read_text())
    if not (isinstance(parts, list) and all(isinstance(p, (int, float)) for p in parts)):
        raise PurifyError(f"{path} is damaged; delete it (the run's time will miss earlier parts)")
    return [float(p) for p in parts]


def broken_reason(check: dict[str, Any]) -> str:
    return (
        f"the purified model scores {100 * check['clean_acc']:.1f}% on {check['images']} of your "
        f"clean images, near chance ({100 * check['chance']:.1f}%)"
    )


def check_unchanged(original: nn.Module, returned: nn.Module, defense: str) -> None:
    """A defense that says it left the model as it is must have: otherwise the report would call
    a changed model the input."""
    changed = changed_tensors(original, returned)
    if changed:
        raise PurifyError(
            f"defense '{defense}' said it left the model unchanged but changed "
            f"{changed[0]}; report this to the plugin's authors"
        )


def changed_tensors(original: nn.Module, returned: nn.Module) -> list[str]:
    """The names of the tensors `returned` does not hold exactly as `original` does (missing,
    added, or of another dtype or value)."""
    kept, given = original.state_dict(), returned.state_dict()
    return [
        key
        for key in [*given, *(k for k in kept if k not in given)]
        if key not in kept
        or key not in given
        or given[key].dtype != kept[key].dtype
        or not torch.equal(given[key].cpu(), kept[key].cpu())
    ]


def non_finite_tensors(model: nn.Module) -> list[str]:
    """The names of the model's float parameters and buffers holding NaN or Inf."""
    return [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]


def check_finite_input(model: nn.Module) -> None:
    """NaN/Inf weights in the model as given are the file's fault, not the input convention's
    or the learning rate's: said before any work, so nothing (not even a work folder) is left."""
    broken = non_finite_tensors(model)
    if broken:
        shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        raise PurifyError(
            f"the input model has NaN/Inf weights in {len(broken)} tensor(s): {shown}; it was "
            f"damaged before purify read it (a diverged training or a broken conversion); pass "
            f"a checkpoint saved before that"
        )


def check_finite_model(
    model: nn.Module, defense: str, probe: np.ndarray | None, device: torch.device
) -> None:
    """A model with NaN/Inf weights, or whose outputs overflow, is never written as if it were
    purified."""
    broken = non_finite_tensors(model)
    outputs_overflow = (
        not broken
        and probe is not None
        and not torch.isfinite(predict_logits(model, probe, device)).all()
    )
    if outputs_overflow:
        broken = ["its outputs on clean images"]
    if broken:
        raise PurifyError(
            f"defense '{defense}' produced a model with non-finite values ({broken[0]}); nothing "
            f"was written; lower its learning rate (-o lr=...) and run again"
        )


def serialization(legacy: bool) -> str:
    """How the torch file was (or is) written: a pre-1.6 input is written back the same way."""
    return "legacy (pre-1.6 torch)" if legacy else "current"


def frozen_copy(model: nn.Module) -> nn.Module:
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference
