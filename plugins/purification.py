"""The main job: checkpoint in, defense, purified checkpoint and report out."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from purify_backdoor.atomic import atomic_write, write_json_atomic
from purify_backdoor.attack_spec import chosen_attack, spec_record
from purify_backdoor.checkpoints import (
    check_class_count,
    check_output_path,
    default_output_path,
    disk_bytes,
    file_sha256,
    open_checkpoint,
    save_checkpoint,
    sibling_path,
)
from purify_backdoor.data.clean_subset import clean_subset
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError
from purify_backdoor.evaluation import (
    cached_evaluation,
    cached_logits,
    defense_effectiveness_rating,
    evaluate_model,
)
from purify_backdoor.figures import MATPLOTLIB_MISSING, Figure, matplotlib_available
from purify_backdoor.input_check import check_clean_accuracy
from purify_backdoor.input_overrides import InputOverride, apply_override, convention_record
from purify_backdoor.manager import Registered, lookup, registered
from purify_backdoor.options import resolve_options
from purify_backdoor.plugin_types import AttackSpec, DefenseJob, RunContext, TriggeredSet
from purify_backdoor.report import build_report, report_path_for
from purify_backdoor.report_html import html_path_for, write_report_html
from purify_backdoor.report_pictures import breakdown, strip, strip_examples
from purify_backdoor.training import predict_logits, remove_workdir, workdir_for

# The exit status of `purify run` when the defense left the model as it was (no trigger found,
# nothing pruned): neither success (0) nor an error (2), so scripts and `purify zoo` can tell.
UNCHANGED_EXIT = 3
# The exit status when the defense left the model near chance on the user's clean images: a
# result to record (the bench and zoo keep its row), never a model to hand back.
BROKEN_EXIT = 4
BROKEN_STATUS = "broken"
DEFENSE_TIMES = "defense_time_s.json"  # in the work folder: the time of each interrupted part


@dataclass(frozen=True)
class PurifyRequest:
    model_path: Path
    plugin: str
    options: dict[str, Any]
    data: Path | None = None
    out: Path | None = None
    format: str = "auto"
    arch: str | None = None
    attack: str | None = None
    ratio: float = 0.05
    n_clean: int | None = None
    overwrite: bool = False
    trust_checkpoint: bool = False
    save_format: str = "native"
    write_unchanged: bool = False  # write the output even when the defense left the model as is
    out_dir: Path | None = None  # the default output name, in this folder instead of the input's
    html: bool = True  # also write <output>.report.html, with its pictures
    override: InputOverride = InputOverride()  # the user's input convention, over the adapter's
    accept_low_accuracy: bool = False  # a model near chance on clean data, going in or coming out
    trojai_round: str | None = None  # force a TrojAI round's preprocessing


def purify_checkpoint(
    request: PurifyRequest, context: RunContext, entry: Registered | None = None
) -> dict[str, Any]:
    """Run one defense on one checkpoint; returns the report, written beside the output (where
    the output would be, when the defense left the model unchanged and nothing else was
    written: the report's `status` then says why; see `DefenseJob.leave_unchanged`). `entry` is
    `request.plugin` already resolved (the CLI resolves it once, to build its flags)."""
    started = time.perf_counter()
    entry = entry or registered("defense", request.plugin)
    defense = entry.item
    options = resolve_options(defense.options, request.options, f"defense '{defense.name}'")

    adapter, loaded = open_checkpoint(
        request.model_path,
        request.format,
        request.trust_checkpoint,
        request.arch,
        trojai_round=request.trojai_round,
    )
    loaded = apply_override(loaded, request.override)
    writer = adapter if request.save_format == "native" else lookup("adapter", request.save_format)
    out = request.out or default_output_path(request.model_path, adapter.suffix, writer.suffix)
    if request.out_dir is not None:
        if request.out is not None:
            raise PurifyError("--out and --out-dir both given; keep one of them")
        out = Path(request.out_dir) / out.name
    check_output_path(out, request.model_path, request.overwrite)
    report_out = report_path_for(out)
    extra_paths = {
        suffix: sibling_path(out, writer.suffix, suffix) for suffix in defense.extra_outputs
    }
    companions = {
        name: out.parent / name.format(defense=defense.name) for name in writer.companions
    }
    html_out = html_path_for(report_out) if request.html else None
    for path in (report_out, *extra_paths.values(), *filter(None, [html_out])):
        check_output_path(path, request.model_path, request.overwrite)
    for path in companions.values():  # their folders are made when they are written
        check_output_path(path, request.model_path, request.overwrite, make_parent=True)

    if defense.needs_data and request.data is None:
        raise PurifyError(f"defense '{defense.name}' needs clean data; pass --data PATH")
    splits = open_data(request.data, quiet=context.quiet) if request.data else None
    clean, clean_indices = None, None
    if defense.needs_data:
        if splits.train is None:
            raise PurifyError(f"{request.data} has no training images to draw clean data from")
        check_class_count(splits.train.num_classes, loaded.convention.num_classes, request.data)
        clean, clean_indices = clean_subset(
            splits.train, context.seed, ratio=request.ratio, count=request.n_clean
        )
    test = splits.test if splits else None
    if test is not None:
        check_class_count(test.num_classes, loaded.convention.num_classes, request.data)

    attack = chosen_attack(request.attack, loaded.attack)
    checked = test if test is not None else clean
    input_check = None
    if checked is not None:
        input_check = check_clean_accuracy(
            loaded.model, checked, context.device, context.seed, request.accept_low_accuracy
        )

    original = _frozen_copy(loaded.model)
    triggered = loaded.triggered
    input_record = _file_record(request.model_path)
    before, reference_logits = None, None
    if test is not None:
        identity = {
            "model_sha256": input_record["sha256"],
            "format": adapter.name,
            "test": test.fingerprint(),
            "device": context.device.type,
        }
        attack_record = None if attack is None else spec_record(attack)
        before = cached_evaluation(
            identity | {"attack": attack_record},
            lambda: evaluate_model(original, test, attack, context, triggered=triggered),
        )
        reference_logits = cached_logits(
            identity, lambda: predict_logits(original, test.images, context.device)
        )

    context.workdir = workdir_for(out)
    context.workdir.mkdir(exist_ok=True)
    job = DefenseJob(
        model=loaded.model,
        clean=clean,
        num_classes=loaded.convention.num_classes,
        options=options,
        context=context,
        input_size=loaded.convention.size,
        arch=loaded.arch,
    )
    earlier = earlier_defense_times(context.workdir) if context.resume else []
    defense_started = time.perf_counter()
    try:
        purified = defense.run(job).eval()
    except BaseException:  # Ctrl-C or an error: the next --resume adds this part's time
        parts = [*earlier, time.perf_counter() - defense_started]
        write_json_atomic(context.workdir / DEFENSE_TIMES, parts)
        raise
    defense_times = [*earlier, time.perf_counter() - defense_started]
    status, reason = job.unchanged or ("purified", None)
    output_check = None
    if job.unchanged:
        check_unchanged(original, purified, defense.name)
    else:
        probe = clean.images[:32] if clean is not None else test.images[:32] if test else None
        check_finite_model(purified, defense.name, probe, context.device)
        if checked is not None:
            output_check = check_clean_accuracy(
                purified, checked, context.device, context.seed, True
            )
            if output_check["low"] and not request.accept_low_accuracy:
                status, reason = BROKEN_STATUS, broken_reason(output_check)

    metrics = None
    if test is not None:
        after = dict(before)  # an unchanged model scores as the input did
        if not job.unchanged:
            after = evaluate_model(
                purified,
                test,
                attack,
                context,
                reference=original,
                triggered=triggered,
                reference_logits=reference_logits,
            )
        metrics = {"before": before, "after": after}
        if "asr" in before:
            metrics["der"] = defense_effectiveness_rating(before, after)

    broken = status == BROKEN_STATUS
    written = not broken and (not job.unchanged or request.write_unchanged)
    output: dict[str, Any] = {"path": str(out), "format": writer.name, "written": written}
    if output_check is not None:
        output["check"] = output_check
    output["serialization"] = _serialization(loaded.legacy and writer is adapter)
    extra = []
    if written:
        save_checkpoint(writer, loaded, purified, out)
        output |= _file_record(out)
        for name, path in companions.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(
                path, lambda tmp, name=name: writer.save_companion(loaded, purified, name, tmp)
            )
            extra.append({"path": str(path)} | _file_record(path))
        for suffix, write in job.extra_outputs.items():
            path = extra_paths[suffix]
            atomic_write(path, lambda tmp, write=write: write(loaded, tmp))
            extra.append({"path": str(path)} | _file_record(path))
    pictures, figures = None, {}
    notes = [] if matplotlib_available() else [f"No plots: {MATPLOTLIB_MISSING}."]
    if request.html:
        if test is not None:
            pictures = _pictures(original, purified, metrics, test, attack, triggered, context)
            figures, note = _illustrations(job, test, attack, triggered)
            notes += [note] if note else []
        figures = job.figures | figures
    report = build_report(
        input={"path": str(request.model_path)}
        | input_record
        | {"format": adapter.name, "arch": loaded.arch}
        | {"serialization": _serialization(loaded.legacy)}
        | {"convention": convention_record(loaded.convention), "check": input_check},
        output=output,
        extra_outputs=extra,
        status=status,
        status_reason=reason,
        plugin={
            "name": defense.name,
            "package": entry.package,
            "version": entry.version,
            "options": options,
        },
        seed=context.seed,
        device=str(context.device),
        data={
            "path": str(request.data) if request.data else None,
            "clean_images": None if clean is None else len(clean),
            "clean_indices": None if clean_indices is None else clean_indices.tolist(),
            "test_images": None if test is None else len(test),
        },
        attack=None if attack is None else spec_record(attack),
        metrics=metrics,
        details=job.details,
        pictures=pictures,
        figures={name: figure.as_record() for name, figure in figures.items()},
        figure_notes=notes,
        defense_time_s=sum(defense_times),
        defense_time_parts_s=defense_times,
        wall_time_s=time.perf_counter() - started,
    )
    write_json_atomic(report_out, report)
    if html_out is not None:
        try:
            write_report_html(report, html_out)
        except Exception as error:  # noqa: BLE001 - the model and its JSON report stand
            raise PurifyError(
                f"the purified model and {report_out.name} were written but the HTML page was "
                f"not ({type(error).__name__}: {error}); draw it with `purify report {report_out}`"
            ) from None
    remove_workdir(context.workdir)
    return report


def _pictures(
    original: nn.Module,
    purified: nn.Module,
    metrics: dict[str, Any],
    test: ImageSet,
    attack: AttackSpec | None,
    triggered: TriggeredSet | None,
    context: RunContext,
) -> dict[str, Any]:
    """Per-class accuracy and triggered destinations before and after, and the example strip,
    for the HTML report."""
    examples = strip_examples(test, attack, triggered)
    target = None if attack is None or attack.options["all_to_all"] else attack.options["target"]
    return {
        "classes": list(test.classes),
        "target": target,
        "before": breakdown(metrics["before"], test.num_classes),
        "after": breakdown(metrics["after"], test.num_classes),
        "strip": strip({"before": original, "after": purified}, examples, context),
    }


def _illustrations(
    job: DefenseJob,
    test: ImageSet,
    attack: AttackSpec | None,
    triggered: TriggeredSet | None,
) -> tuple[dict[str, Figure], str | None]:
    """The defense's pictures that need a triggered image (see DefenseJob.illustrate). A picture
    that fails to draw is a note in the report, never the loss of a purified model."""
    if job.illustrate is None:
        return {}, None
    clean, stamped = strip_examples(test, attack, triggered)
    if attack is None:
        stamped = None  # a stored triggered image is not the same image as the clean one
    try:
        return job.illustrate(clean, stamped), None
    except Exception as error:  # noqa: BLE001 - a plugin's drawing code must not cost the run
        return {}, f"the defense's pictures could not be drawn ({type(error).__name__}: {error})"


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
    kept, given = original.state_dict(), returned.state_dict()
    changed = [
        key
        for key, value in given.items()
        if key not in kept or not torch.equal(value.cpu(), kept[key].cpu())
    ]
    if changed or kept.keys() != given.keys():
        raise PurifyError(
            f"defense '{defense}' said it left the model unchanged but changed "
            f"{changed[0] if changed else 'its layers'}; report this to the plugin's authors"
        )


def check_finite_model(
    model: nn.Module, defense: str, probe: np.ndarray | None, device: torch.device
) -> None:
    """A model with NaN/Inf weights, or whose outputs overflow, is never written as if it were
    purified."""
    broken = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
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


def _serialization(legacy: bool) -> str:
    """How the torch file was (or is) written: a pre-1.6 input is written back the same way."""
    return "legacy (pre-1.6 torch)" if legacy else "current"


def _file_record(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "bytes": disk_bytes(path)}


def _frozen_copy(model: nn.Module) -> nn.Module:
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference
