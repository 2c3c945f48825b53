"""`run_arguments` writes a `PurifyRequest` as the `purify run` command that makes it: parsed back
by the real command line, every field comes back as it was, and the bench's flags come first, in
the order its committed logs hold."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from purify_backdoor import purification
from purify_backdoor.cli import cli
from purify_backdoor.input_overrides import InputOverride
from purify_backdoor.purification import PurifyRequest
from purify_backdoor.run_command import run_arguments

BASE = PurifyRequest(model_path=Path("models/m.pth.tar"), plugin="finetune", options={})

# One request per field, each differing from BASE in that field only. Plugin options parsed from
# `-o` are text: the defense's declared types convert them when it runs.
CHANGED = {
    "data": {"data": Path("data/cifar10.npz")},
    "out": {"out": Path("outs/m.purified.pth.tar")},
    "out_dir": {"out_dir": Path("outs")},
    "format": {"format": "nad"},
    "arch": {"arch": "wrn16-1"},
    "attack": {"attack": "badnet:pattern=grid,target=5"},
    "ratio": {"ratio": 0.1},
    "n_clean": {"n_clean": 500},
    "overwrite": {"overwrite": True},
    "trust_checkpoint": {"trust_checkpoint": True},
    "save_format": {"save_format": "safetensors"},
    "write_unchanged": {"write_unchanged": True},
    "html": {"html": False},
    "normalize": {"override": InputOverride(normalize="imagenet")},
    "mean_std": {"override": InputOverride(mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.4))},
    "bgr": {"override": InputOverride(bgr=True)},
    "scale": {"override": InputOverride(scale=255.0)},
    "trojai_round": {"trojai_round": "11"},
    "defense_name": {"defense_name": "medic-tau10"},
    "accept_low_accuracy": {"accept_low_accuracy": True},
    "options": {"options": {"epochs": "5", "lr": "0.01"}},
}
EVERYTHING = dataclasses.replace(
    BASE,
    **{
        key: value
        for name, fields in CHANGED.items()
        if name not in ("n_clean", "normalize", "mean_std", "bgr", "scale")
        for key, value in fields.items()
    },
    override=InputOverride(mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.4), bgr=True, scale=255.0),
)  # --n-clean would hide --ratio


@pytest.fixture
def parsed(monkeypatch):
    """Parse arguments with `purify`'s own command line; returns the request and run context it
    hands to purify_checkpoint (which is not run)."""
    monkeypatch.delenv("PURIFY_ACCEPT_LOW_ACCURACY", raising=False)
    seen = {}

    def capture(request, context, entry=None):
        seen.update(request=request, context=context)
        return {"metrics": None, "output": {"path": "out.pth"}, "status": "purified"}

    monkeypatch.setattr(purification, "purify_checkpoint", capture)

    def parse(arguments: list[str]):
        assert cli.main(arguments, prog_name="purify", standalone_mode=False) == 0
        return seen["request"], seen["context"]

    return parse


def test_a_default_request_states_only_what_every_job_states():
    assert run_arguments(BASE, seed=0, device="auto") == [
        "run", "--plugin", "finetune", "models/m.pth.tar", "--seed", "0", "--device", "auto",
        "--quiet", "--ratio", "0.05",
    ]  # fmt: skip
    assert "--quiet" not in run_arguments(BASE, seed=0, device="auto", quiet=False)
    assert run_arguments(BASE, seed=0, device="auto", resume=True)[-1] == "--resume"


@pytest.mark.parametrize("name", CHANGED)
def test_each_field_comes_back_through_the_command_line(parsed, name):
    request = dataclasses.replace(BASE, **CHANGED[name])
    arguments = run_arguments(request, seed=3, device="cpu")
    assert arguments != run_arguments(BASE, seed=3, device="cpu")
    got, _ = parsed(arguments)
    assert got == request


def test_every_field_at_once_comes_back_with_the_run_settings(parsed):
    arguments = run_arguments(EVERYTHING, seed=7, device="cpu", quiet=False, resume=True)
    got, context = parsed(arguments)
    assert got == EVERYTHING
    assert (context.seed, context.quiet, context.resume) == (7, False, True)


def test_the_bench_flags_come_first_in_the_order_of_its_logs():
    request = dataclasses.replace(
        EVERYTHING, options={"epochs": "5"}, out_dir=None, override=InputOverride(bgr=True)
    )
    arguments = run_arguments(request, seed=1, device="cuda")
    assert arguments == [
        "run", "--plugin", "finetune", "models/m.pth.tar", "--data", "data/cifar10.npz",
        "--seed", "1", "--out", "outs/m.purified.pth.tar", "--device", "cuda", "--quiet",
        "--overwrite", "-o", "epochs=5", "--ratio", "0.1",
        "--attack", "badnet:pattern=grid,target=5", "--format", "nad", "--arch", "wrn16-1",
        "--accept-low-accuracy",
        "--trust-checkpoint", "--save-format", "safetensors", "--write-unchanged", "--no-html",
        "--bgr", "--trojai-round", "11", "--defense-name", "medic-tau10",
    ]  # fmt: skip


def test_every_field_of_the_request_is_covered_here():
    """A field added to PurifyRequest or InputOverride fails here until the command writes it."""
    changed = {key for fields in CHANGED.values() for key in fields}
    assert changed | {"model_path", "plugin"} == {f.name for f in dataclasses.fields(BASE)}
    overrides = {
        f.name
        for fields in CHANGED.values()
        for f in dataclasses.fields(InputOverride)
        if "override" in fields and getattr(fields["override"], f.name) != f.default
    }
    assert overrides == {f.name for f in dataclasses.fields(InputOverride)}
