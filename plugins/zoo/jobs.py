"""One `purify run` job per zoo model, and the state on disk that makes a re-run skip what is
done: a model is finished when its report exists, is newer than the model's files and its log's
command is the one asked for now;
it failed for good when `failed.json` says the same command exited with purify's bad-input status
on the same, unchanged input (a crash, a kill or an interruption is tried again)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import write_json_atomic
from purify_backdoor.checkpoints import checkpoint_files
from purify_backdoor.executors.job import (
    Job,
    Outcome,
    command_signature,
    logged_command,
    option_assignments,
)
from purify_backdoor.zoo.inventory import ZooModel

BAD_INPUT_EXIT = 2
LOG = "purify.log"
FAILED = "failed.json"


@dataclass(frozen=True)
class ZooRequest:
    """`purify zoo`: one defense over every model of `zoo`, outputs under `out/<name>/`. The
    per-model fields of a manifest row override `data`, `attack`, `format` and `arch`."""

    zoo: Path
    plugin: str
    out: Path
    options: dict[str, Any] = field(default_factory=dict)
    data: Path | None = None
    attack: str | None = None
    format: str = "auto"
    arch: str | None = None
    ratio: float = 0.05
    n_clean: int | None = None
    trust_checkpoint: bool = False
    save_format: str = "native"
    write_unchanged: bool = False
    seed: int = 0
    device: str = "auto"
    retry_failed: bool = False
    html: bool = True  # an HTML report per model (zoo.html is written either way)
    input_flags: tuple[str, ...] = ()  # the input-convention flags, passed on to every run


def model_folder(model: ZooModel, out: Path) -> Path:
    return out / model.name


def model_command(model: ZooModel, request: ZooRequest) -> list[str]:
    """The `purify run` arguments for one model, without --resume (added for started models)."""
    data = model.data or request.data
    attack = model.attack or request.attack
    arch = model.arch or request.arch
    command = [
        "run", "--plugin", request.plugin, str(model.path.resolve()),
        "--out-dir", str(model_folder(model, request.out).resolve()),
        "--seed", str(request.seed), "--device", request.device, "--quiet", "--overwrite",
        "--format", model.format or request.format, "--save-format", request.save_format,
        *option_assignments(request.options), *request.input_flags,
    ]  # fmt: skip
    command += ["--n-clean", str(request.n_clean)] if request.n_clean else []
    command += [] if request.n_clean else ["--ratio", str(request.ratio)]
    command += ["--data", str(Path(data).resolve())] if data else []
    command += ["--attack", attack] if attack else []
    command += ["--arch", arch] if arch else []
    command += ["--trust-checkpoint"] if request.trust_checkpoint else []
    command += ["--write-unchanged"] if request.write_unchanged else []
    command += [] if request.html else ["--no-html"]
    return command


def model_job(model: ZooModel, request: ZooRequest) -> Job:
    folder = model_folder(model, request.out)
    command = model_command(model, request)
    if any(folder.glob("*.work")):  # a started run: continue from its last epoch
        command.append("--resume")
    return Job(model.name, tuple(command), folder / LOG)


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
