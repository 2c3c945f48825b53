"""A `PurifyRequest` as the `purify run` command line that makes the same request: the bench and
the zoo start each job as its own `purify` process, and both read a job's logged command back to
decide whether it is finished, so they must write it the same way, from one place."""

from __future__ import annotations

from pathlib import Path

from purify_backdoor.executors.job import option_assignments
from purify_backdoor.input_overrides import InputOverride
from purify_backdoor.purification import PurifyRequest


def run_arguments(
    request: PurifyRequest, *, seed: int, device: str, quiet: bool = True, resume: bool = False
) -> list[str]:
    """The arguments after `purify`: every field that differs from its default, and how much
    clean data (`--ratio` even at its default, as the bench has always written it). The first
    flags keep the order of the bench's committed cell logs, whose first lines are compared
    with this command to tell a finished cell: a new flag goes after them, never among them."""
    arguments = ["run", "--plugin", request.plugin, str(request.model_path)]
    arguments += _valued("--data", request.data)
    arguments += ["--seed", str(seed)]
    arguments += _valued("--out", request.out)
    arguments += ["--device", device]
    arguments += _switch("--quiet", quiet)
    arguments += _switch("--overwrite", request.overwrite)
    arguments += option_assignments(request.options)
    if request.n_clean is not None:
        arguments += ["--n-clean", str(request.n_clean)]
    else:
        arguments += ["--ratio", str(request.ratio)]
    arguments += _valued("--attack", request.attack)
    arguments += _valued("--format", None if request.format == "auto" else request.format)
    arguments += _valued("--arch", request.arch)
    arguments += _switch("--accept-low-accuracy", request.accept_low_accuracy)
    arguments += _valued("--out-dir", request.out_dir)
    arguments += _switch("--trust-checkpoint", request.trust_checkpoint)
    native = request.save_format == "native"
    arguments += _valued("--save-format", None if native else request.save_format)
    arguments += _switch("--write-unchanged", request.write_unchanged)
    arguments += _switch("--no-html", not request.html)
    arguments += override_arguments(request.override)
    arguments += _valued("--trojai-round", request.trojai_round)
    arguments += _valued("--defense-name", request.defense_name)
    return arguments + _switch("--resume", resume)


def override_arguments(override: InputOverride) -> list[str]:
    """The user's input convention as the flags that gave it."""
    arguments = _valued("--normalize", override.normalize)
    arguments += _valued("--mean", _channels(override.mean))
    arguments += _valued("--std", _channels(override.std))
    arguments += _switch("--bgr", override.bgr)
    return arguments + _valued("--input-scale", None if override.scale == 1.0 else override.scale)


def _channels(values: tuple[float, ...] | None) -> str | None:
    return None if values is None else ",".join(str(value) for value in values)


def _valued(flag: str, value: str | float | Path | None) -> list[str]:
    return [] if value is None else [flag, str(value)]


def _switch(flag: str, on: bool) -> list[str]:
    return [flag] if on else []
