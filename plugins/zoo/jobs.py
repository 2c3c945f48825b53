"""One `purify run` job per zoo model, and the state on disk that makes a re-run skip what is
done: a model is finished when its report exists, is newer than the model's files and its log's
command is the one asked for now;
it failed for good when `failed.json` says the same command exited with purify's bad-input status
on the same, unchanged input (a crash, a kill or an interruption is tried again)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import write_json_atomic
from purify_backdoor.checkpoints import checkpoint_files
from purify_backdoor.errors import PurifyError
from purify_backdoor.executors.job import Job, Outcome, command_signature, logged_command
from purify_backdoor.purification import PurifyRequest
from purify_backdoor.run_command import run_arguments
from purify_backdoor.zoo.inventory import ZooModel

BAD_INPUT_EXIT = 2
LOG = "purify.log"
FAILED = "failed.json"


@dataclass(frozen=True)
class ZooRequest:
    """`purify zoo`: `template` over every model of `zoo`, outputs under `out/<name>/`. Each
    model's job is the template with that model's `model_path` and `out_dir` (`out` unset), with
    its manifest row's `data`, `attack`, `format` and `arch` where the row gives them, and with
    `overwrite` set: the model's folder is the zoo's own, and a re-run replaces what a failed or
    changed run left there."""

    zoo: Path
    out: Path
    template: PurifyRequest
    seed: int = 0
    device: str = "auto"
    retry_failed: bool = False


def model_folder(model: ZooModel, out: Path) -> Path:
    """`out/<name>`, refused where it resolves anywhere but directly under `out` (a link in `out`
    that points elsewhere; names are checked when the zoo is read): the zoo writes with
    --overwrite, so a folder outside would have its files replaced."""
    folder = out / model.name
    if folder.resolve().parent != out.resolve():
        raise PurifyError(
            f"the output folder of model '{model.name}', {folder}, resolves to "
            f"{folder.resolve()}, outside {out}; remove that link or rename the model"
        )
    return folder


def model_request(model: ZooModel, request: ZooRequest) -> PurifyRequest:
    """One model's `purify run` request, its paths resolved: a job runs in any folder."""
    template = request.template
    data = model.data or template.data
    return replace(
        template,
        model_path=model.path.resolve(),
        data=Path(data).resolve() if data else None,
        attack=model.attack or template.attack,
        format=model.format or template.format,
        arch=model.arch or template.arch,
        out=None,
        out_dir=model_folder(model, request.out).resolve(),
        overwrite=True,
    )


def model_command(model: ZooModel, request: ZooRequest, resume: bool = False) -> list[str]:
    """The `purify run` arguments for one model (--resume for a started one)."""
    return run_arguments(
        model_request(model, request), seed=request.seed, device=request.device, resume=resume
    )


def model_job(model: ZooModel, request: ZooRequest) -> Job:
    folder = model_folder(model, request.out)
    started = any(folder.glob("*.work"))  # a started run: continue from its last epoch
    return Job(model.name, tuple(model_command(model, request, started)), folder / LOG)


def report_of(model: ZooModel, out: Path) -> Path | None:
    """The model's report (its output's name depends on the format detected in the job)."""
    reports = sorted(model_folder(model, out).glob("*.report.json"))
    return reports[-1] if reports else None


def finished(model: ZooModel, request: ZooRequest) -> bool:
    folder = model_folder(model, request.out)
    wanted = command_signature(model_command(model, request))
    report = report_of(model, request.out)
    if report is None or logged_command(folder / LOG) != wanted:
        return False
    # A model file written after its report (another model under the same name) runs again. The
    # file times, not the sha256 the report holds: a re-run would otherwise read every byte of a
    # zoo of gigabyte models just to skip them.
    stamp = input_stamp(model.path)
    return stamp is not None and stamp["mtime_ns"] <= report.stat().st_mtime_ns


def failed_for_good(model: ZooModel, request: ZooRequest) -> bool:
    if request.retry_failed:
        return False
    record = failure_record(model, request.out)
    return (
        record is not None
        and record.get("exit_code") == BAD_INPUT_EXIT
        and record.get("signature") == command_signature(model_command(model, request))
        and record.get("input") == input_stamp(model.path)
    )


def failure_record(model: ZooModel, out: Path) -> dict[str, Any] | None:
    path = model_folder(model, out) / FAILED
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def record_outcome(model: ZooModel, request: ZooRequest, outcome: Outcome) -> None:
    """Keep a failure (what `failed_for_good` reads back); a success clears an older one."""
    path = model_folder(model, request.out) / FAILED
    if outcome.ok:
        path.unlink(missing_ok=True)
        return
    write_json_atomic(
        path,
        {
            "signature": command_signature(model_command(model, request)),
            "exit_code": outcome.exit_code,
            "error": outcome.error,
            "seconds": outcome.seconds,
            "input": input_stamp(model.path),
        },
    )


def input_stamp(path: Path) -> dict[str, int] | None:
    """Size and modification time: a model file replaced since its failure is tried again."""
    try:
        stats = [file.stat() for file in checkpoint_files(path)]
    except OSError:
        return None
    return {
        "bytes": sum(stat.st_size for stat in stats),
        "mtime_ns": max((stat.st_mtime_ns for stat in stats), default=0),
    }
