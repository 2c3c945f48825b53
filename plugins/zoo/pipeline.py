"""`purify zoo` from zoo to summary: list the models, skip the finished ones (and those that
failed for good), run the rest through an executor, and keep the summary true after each model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from purify_backdoor.errors import PurifyError
from purify_backdoor.executors import Executor, Outcome
from purify_backdoor.manager import registered
from purify_backdoor.options import resolve_options
from purify_backdoor.plugin_types import RunContext
from purify_backdoor.zoo.inventory import read_zoo
from purify_backdoor.zoo.jobs import (
    ZooRequest,
    failed_for_good,
    finished,
    model_folder,
    model_job,
    record_outcome,
)
from purify_backdoor.zoo.summary import FAILED_STATUS, model_row, write_summary


@dataclass(frozen=True)
class ZooRun:
    """What a zoo run left: a row per model, the summary files, and the outcomes of the jobs this
    run submitted (none when everything was already done)."""

    rows: list[dict[str, Any]]
    written: list[Path]
    outcomes: list[Outcome]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == FAILED_STATUS]


def run_zoo(request: ZooRequest, executor: Executor, context: RunContext) -> ZooRun:
    """Purify every model of `request.zoo` that is not done yet; one failing model is a row with
    its error, never the end of the run. On Ctrl-C the summary is written as it stands and
    KeyboardInterrupt passes on: the same call again resumes."""
    template = request.template
    entry = registered("defense", template.plugin)
    resolve_options(entry.item.options, template.options, f"defense '{entry.item.name}'")
    if template.data is not None and not Path(template.data).exists():
        raise PurifyError(f"data path {template.data} does not exist; check --data")
    models = read_zoo(request.zoo, exclude=request.out)
    try:
        request.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PurifyError(f"cannot create output folder {request.out} ({error})") from None
    done = {m.name for m in models if finished(m, request)}
    settled = done | {m.name for m in models if m.name not in done and failed_for_good(m, request)}
    rows = {m.name: model_row(m, request.out, m.name in done) for m in models}
    todo = [m for m in models if m.name not in settled]
    for model in todo:
        model_folder(model, request.out).mkdir(exist_ok=True)
    by_name = {m.name: m for m in models}

    failed = sum(1 for row in rows.values() if row["status"] == FAILED_STATUS)
    bar = context.progress(total=len(models), initial=len(settled), desc="zoo", unit="model")
    bar.set_postfix_str(f"failed {failed}")

    def on_done(outcome: Outcome) -> None:
        nonlocal failed
        model = by_name[outcome.key]
        record_outcome(model, request, outcome)
        rows[model.name] = model_row(model, request.out, outcome.ok)
        failed += not outcome.ok
        write_summary(list(rows.values()), request.out)
        bar.set_postfix_str(f"failed {failed}")
        bar.update()

    written = write_summary(list(rows.values()), request.out)
    try:
        outcomes = executor.run([model_job(m, request) for m in todo], on_done)
    finally:
        bar.close()
    return ZooRun(list(rows.values()), written, outcomes)
