"""The main job on files: checkpoint in, defense, purified checkpoint and report out. A short
composition of named stages: open the input, plan the outputs, draw the defender's data, run the
shared core (stages.py, also behind `defend()`), write the outputs, write the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import report_json
from purify_backdoor.attack_spec import chosen_attack
from purify_backdoor.checkpoints import (
    check_class_count,
    check_output_path,
    default_output,
    disk_bytes,
    file_sha256,
    open_checkpoint,
    sibling_path,
)
from purify_backdoor.data.clean_subset import clean_subset
from purify_backdoor.data.loading import open_data
from purify_backdoor.disk_space import model_bytes, out_of_space_is_one_line
from purify_backdoor.errors import PurifyError
from purify_backdoor.input_overrides import InputOverride, apply_override
from purify_backdoor.manager import Registered, lookup, registered
from purify_backdoor.options import resolve_options
from purify_backdoor.plugin_types import Adapter, Defense, LoadedModel, RunContext
from purify_backdoor.report import report_path_for
from purify_backdoor.report_html import html_path_for, render_report
from purify_backdoor.staged_outputs import StagedOutputs
from purify_backdoor.stages import (
    BROKEN,
    UNCHANGED,
    DefenderData,
    DefenseResult,
    run_stages,
    serialization,
)
from purify_backdoor.training import remove_workdir, workdir_for
from purify_backdoor.untrusted_files import is_plain_name
from purify_backdoor.work_folder import defense_record, held_work_folder

# The exit status of `purify run` when the defense left the model as it was (no trigger found,
# nothing pruned): neither success (0) nor an error (2), so scripts and `purify zoo` can tell.
UNCHANGED_EXIT = 3
# The exit status when the defense left the model near chance on the user's clean images: a
# result to record (the bench and zoo keep its row), never a model to hand back.
BROKEN_EXIT = 4
REPORT_BYTES = 4 << 20  # room for the JSON report and its page with pictures


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
    # the name outputs are filed under where a format files them by defense (BackdoorBench's
    # defense/purify-<name>/), instead of the plugin's: two runs of one defense side by side
    defense_name: str | None = None


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
    request = replace(request, data=named_data(request.data, loaded, context))
    plan = plan_outputs(request, adapter, defense)
    data = defender_data(request, defense, loaded.convention.num_classes, context)
    attack = chosen_attack(request.attack, loaded.attack)
    input_record = file_record(request.model_path)
    context.workdir = workdir_for(plan.out)
    record = defense_record(
        defense.name, options, input_record["sha256"], loaded, data.clean, data.test, context.seed
    )
    with held_work_folder(context.workdir, record, context.resume):
        # the per-epoch state: weights, optimizer and, for some defenses, a second network
        state_bytes = 3 * model_bytes(loaded.model)
        with out_of_space_is_one_line(plan.out.parent, state_bytes, "the run's resumable state"):
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

        def report_of(output: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
            return result.report(
                {"path": str(request.model_path)} | input_record,
                output,
                extra,
                str(request.data) if request.data else None,
                time.perf_counter() - started,
            )

        report = commit_outputs(plan, result, request.write_unchanged, report_of)
        remove_workdir(context.workdir)
    return report


def named_data(data: Path | None, loaded: LoadedModel, context: RunContext) -> Path | None:
    """The data to read: `--data`; without it, the data set the checkpoint names (BackdoorBench's
    `data_path`); and for a folder of data sets, as BackdoorBench's `dataset_path` is (`data/`
    holding `cifar10/`, `gtsrb/`...), the one named like the checkpoint's data set."""
    if data is None and loaded.data_path is not None:
        context.log(f"--data not given: the data the checkpoint names, {loaded.data_path}")
        return loaded.data_path
    if data is None or loaded.data_name is None:
        return data
    inner = Path(data) / loaded.data_name
    if inner.is_dir() and not any((Path(data) / split).is_dir() for split in ("train", "test")):
        context.log(f"--data {data} holds data sets: reading {inner}, the checkpoint's")
        return inner
    return data


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
    label = filed_name(request.defense_name) or defense.name
    out = request.out or default_output(request.model_path, adapter, writer, label)
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
        companions={n: out.parent / n.format(defense=label) for n in writer.companions},
    )
    check_output_path(out, request.model_path, request.overwrite)
    for path in (report, *plan.extras.values(), *filter(None, [plan.html])):
        check_output_path(path, request.model_path, request.overwrite)
    for path in plan.companions.values():  # their folders are made when they are written
        check_output_path(path, request.model_path, request.overwrite, make_parent=True)
    return plan


def filed_name(name: str | None) -> str | None:
    """`--defense-name` goes into file and folder names: one plain path component only."""
    if name is not None and (not is_plain_name(name) or name.strip() != name):
        raise PurifyError(
            f"--defense-name {name!r} must be a plain name (no path separators, not . or ..); "
            f"for example --defense-name medic-tau10"
        )
    return name


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


def commit_outputs(
    plan: OutputPlan,
    result: DefenseResult,
    write_unchanged: bool,
    report_of: Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]],
) -> dict[str, Any]:
    """The purified model in the planned format, its companions, the defense's extra outputs, the
    JSON report (`report_of(output record, extra records)`) and its HTML page: all written in
    full first, then moved into place together, so a failure anywhere (a full disk, a writer
    raising) leaves none of them and the work folder to resume from. Nothing is written for a
    broken model, and only the report for an unchanged one unless asked."""
    verdict, loaded, model = result.verdict, result.loaded, result.model
    unchanged = verdict.outcome == UNCHANGED
    written = verdict.outcome != BROKEN and (not unchanged or write_unchanged)
    output: dict[str, Any] = {"path": str(plan.out), "format": plan.writer.name, "written": written}
    if verdict.output_check is not None:
        output["check"] = verdict.output_check
    output["serialization"] = serialization(loaded.legacy and plan.native)
    extra: list[dict[str, Any]] = []
    needed = (1 + len(plan.companions)) * model_bytes(model) if written else 0
    writer = plan.writer
    with (
        StagedOutputs() as staged,
        out_of_space_is_one_line(plan.out.parent, needed + REPORT_BYTES, "the outputs"),
    ):
        if written:
            output |= file_record(
                staged.stage(plan.out, lambda tmp: writer.save(loaded, model, tmp))
            )
            for name, path in plan.companions.items():
                staged.make_folder(path.parent)
                tmp = staged.stage(
                    path, lambda tmp, name=name: writer.save_companion(loaded, model, name, tmp)
                )
                extra.append({"path": str(path)} | file_record(tmp))
            for suffix, write in result.outcome.job.extra_outputs.items():
                path = plan.extras[suffix]
                tmp = staged.stage(path, lambda tmp, write=write: write(loaded, tmp))
                extra.append({"path": str(path)} | file_record(tmp))
        report = report_of(output, extra)
        staged.stage(plan.report, lambda tmp: tmp.write_text(report_json(report)))
        if plan.html is not None:
            staged.stage(plan.html, lambda tmp: tmp.write_text(html_page(report, plan)))
        staged.commit()
    return report


def html_page(report: dict[str, Any], plan: OutputPlan) -> str:
    """The report's page; a page that fails to draw costs the run nothing but the time to run
    it again without the page."""
    try:
        return render_report(report)
    except Exception as error:  # noqa: BLE001 - a drawing bug must not read as a crash
        raise PurifyError(
            f"the report's HTML page could not be drawn ({type(error).__name__}: {error}), so "
            f"nothing was written; re-run the same command with --resume --no-html, and draw the "
            f"page later with `purify report {plan.report}`"
        ) from None


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "bytes": disk_bytes(path)}
