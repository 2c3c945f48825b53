"""The main job on files: checkpoint in, defense, purified checkpoint and report out. A short
composition of named stages: open the input, plan the outputs, draw the defender's data, run the
shared core (stages.py, also behind `defend()`), write the outputs, write the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import atomic_write, write_json_atomic
from purify_backdoor.attack_spec import chosen_attack
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
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError
from purify_backdoor.input_overrides import InputOverride, apply_override
from purify_backdoor.manager import Registered, lookup, registered
from purify_backdoor.options import resolve_options
from purify_backdoor.plugin_types import Adapter, Defense, LoadedModel, RunContext
from purify_backdoor.report import report_path_for
from purify_backdoor.report_html import html_path_for, write_report_html
from purify_backdoor.stages import (
    BROKEN,
    UNCHANGED,
    DefenderData,
    DefenseResult,
    run_stages,
    serialization,
)
from purify_backdoor.training import remove_workdir, workdir_for

# The exit status of `purify run` when the defense left the model as it was (no trigger found,
# nothing pruned): neither success (0) nor an error (2), so scripts and `purify zoo` can tell.
UNCHANGED_EXIT = 3
# The exit status when the defense left the model near chance on the user's clean images: a
# result to record (the bench and zoo keep its row), never a model to hand back.
BROKEN_EXIT = 4


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


@dataclass(frozen=True)
class OutputPlan:
    """Every path a run may write, checked before any work: the model, its report and HTML page,
    the defense's extra outputs and the format's companion files."""

    out: Path
    writer: Adapter
    native: bool  # written by the input's own adapter (a pre-1.6 input is written back so)
    report: Path
    html: Path | None
    extras: dict[str, Path]
    companions: dict[str, Path]


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
    adapter, loaded = open_input(request)
    plan = plan_outputs(request, adapter, defense)
    data = defender_data(request, defense, loaded.convention.num_classes, context)
    attack = chosen_attack(request.attack, loaded.attack)
    input_record = file_record(request.model_path)
    context.workdir = workdir_for(plan.out)
    result = run_stages(
        entry,
        options,
        loaded,
        data,
        attack,
        context,
        accept_low=request.accept_low_accuracy,
        identity={"model_sha256": input_record["sha256"], "format": adapter.name},
        pictures=request.html,
    )
    output, extra = write_outputs(plan, result, request.write_unchanged)
    report = result.report(
        {"path": str(request.model_path)} | input_record,
        output,
        extra,
        str(request.data) if request.data else None,
        time.perf_counter() - started,
    )
    write_report(plan, report)
    remove_workdir(context.workdir)
    return report


def open_input(request: PurifyRequest) -> tuple[Adapter, LoadedModel]:
    """The checkpoint through its format's adapter, with the user's input convention over the
    adapter's."""
    adapter, loaded = open_checkpoint(
        request.model_path,
        request.format,
        request.trust_checkpoint,
        request.arch,
        trojai_round=request.trojai_round,
    )
    return adapter, apply_override(loaded, request.override)


def plan_outputs(request: PurifyRequest, adapter: Adapter, defense: Defense) -> OutputPlan:
    """Where each output goes, every path checked (never the input, never an existing file
    without --overwrite) before minutes of work."""
    writer = adapter if request.save_format == "native" else lookup("adapter", request.save_format)
    out = request.out or default_output_path(request.model_path, adapter.suffix, writer.suffix)
    if request.out_dir is not None:
        if request.out is not None:
            raise PurifyError("--out and --out-dir both given; keep one of them")
        out = Path(request.out_dir) / out.name
    report = report_path_for(out)
    plan = OutputPlan(
        out=out,
        writer=writer,
        native=writer is adapter,
        report=report,
        html=html_path_for(report) if request.html else None,
        extras={s: sibling_path(out, writer.suffix, s) for s in defense.extra_outputs},
        companions={n: out.parent / n.format(defense=defense.name) for n in writer.companions},
    )
    check_output_path(out, request.model_path, request.overwrite)
    for path in (report, *plan.extras.values(), *filter(None, [plan.html])):
        check_output_path(path, request.model_path, request.overwrite)
    for path in plan.companions.values():  # their folders are made when they are written
        check_output_path(path, request.model_path, request.overwrite, make_parent=True)
    return plan


def defender_data(
    request: PurifyRequest, defense: Defense, num_classes: int, context: RunContext
) -> DefenderData:
    """The clean subset the defender holds (seeded, class-stratified) and the test split."""
    if defense.needs_data and request.data is None:
        raise PurifyError(f"defense '{defense.name}' needs clean data; pass --data PATH")
    splits = open_data(request.data, quiet=context.quiet) if request.data else None
    clean, clean_indices = None, None
    if defense.needs_data:
        if splits.train is None:
            raise PurifyError(f"{request.data} has no training images to draw clean data from")
        check_class_count(splits.train.num_classes, num_classes, request.data)
        clean, clean_indices = clean_subset(
            splits.train, context.seed, ratio=request.ratio, count=request.n_clean
        )
    test = splits.test if splits else None
    if test is not None:
        check_class_count(test.num_classes, num_classes, request.data)
    return DefenderData(clean, test, clean_indices)


def write_outputs(
    plan: OutputPlan, result: DefenseResult, write_unchanged: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The purified model in the planned format, its companions and the defense's extra outputs,
    each atomically; nothing for a broken model, and nothing for an unchanged one unless asked.
    Returns the report's `output` and `extra_outputs` records."""
    verdict, loaded, model = result.verdict, result.loaded, result.model
    unchanged = verdict.outcome == UNCHANGED
    written = verdict.outcome != BROKEN and (not unchanged or write_unchanged)
    output: dict[str, Any] = {"path": str(plan.out), "format": plan.writer.name, "written": written}
    if verdict.output_check is not None:
        output["check"] = verdict.output_check
    output["serialization"] = serialization(loaded.legacy and plan.native)
    extra: list[dict[str, Any]] = []
    if not written:
        return output, extra
    save_checkpoint(plan.writer, loaded, model, plan.out)
    output |= file_record(plan.out)
    writer = plan.writer
    for name, path in plan.companions.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp, name=name: writer.save_companion(loaded, model, name, tmp))
        extra.append({"path": str(path)} | file_record(path))
    for suffix, write in result.outcome.job.extra_outputs.items():
        path = plan.extras[suffix]
        atomic_write(path, lambda tmp, write=write: write(loaded, tmp))
        extra.append({"path": str(path)} | file_record(path))
    return output, extra


def write_report(plan: OutputPlan, report: dict[str, Any]) -> None:
    """The JSON report, then its HTML page; a page that fails to draw leaves the model and the
    JSON report standing, and says how to draw it again."""
    write_json_atomic(plan.report, report)
    if plan.html is None:
        return
    try:
        write_report_html(report, plan.html)
    except Exception as error:  # noqa: BLE001 - the model and its JSON report stand
        raise PurifyError(
            f"the purified model and {plan.report.name} were written but the HTML page was "
            f"not ({type(error).__name__}: {error}); draw it with `purify report {plan.report}`"
        ) from None


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "bytes": disk_bytes(path)}
