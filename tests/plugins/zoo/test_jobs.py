"""A zoo model's job is the zoo's template request with that model's own fields: its path and
folder, and its manifest row over the zoo-wide data, attack, format and arch; everything else
(options, input convention, output settings) reaches each run as given."""

from __future__ import annotations

import json
from pathlib import Path

from purify_backdoor.executors.job import command_signature
from purify_backdoor.input_overrides import InputOverride
from purify_backdoor.purification import PurifyRequest
from purify_backdoor.zoo.inventory import ZooModel
from purify_backdoor.zoo.jobs import (
    BAD_INPUT_EXIT,
    FAILED,
    LOG,
    ZooRequest,
    failed_for_good,
    finished,
    input_stamp,
    model_command,
    model_folder,
    model_job,
    model_request,
)


def zoo_request(tmp_path: Path) -> ZooRequest:
    template = PurifyRequest(
        model_path=tmp_path / "zoo", plugin="finetune", options={"epochs": 2},
        data=tmp_path / "data", attack="badnet:target=5", format="nad", arch="wrn16-1",
        ratio=0.1, save_format="safetensors", html=False, accept_low_accuracy=True,
        override=InputOverride(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), bgr=True),
        trojai_round="11",
    )  # fmt: skip
    return ZooRequest(zoo=tmp_path / "zoo", out=tmp_path / "out", template=template, device="cpu")


def test_a_model_takes_the_template_with_its_path_and_folder(tmp_path):
    request = zoo_request(tmp_path)
    model = ZooModel("a", tmp_path / "zoo" / "a.pth.tar")
    job = model_request(model, request)
    assert job.model_path == model.path.resolve()
    assert (job.out, job.out_dir) == (None, model_folder(model, request.out).resolve())
    assert job.overwrite and job.data == (tmp_path / "data").resolve()
    kept = ("plugin", "options", "attack", "format", "arch", "ratio", "save_format", "html")
    kept += ("accept_low_accuracy", "override", "trojai_round")
    assert all(getattr(job, name) == getattr(request.template, name) for name in kept)
    command = model_command(model, request)
    for flags in (["--mean", "0.5,0.5,0.5"], ["--bgr"], ["--trojai-round", "11"], ["--no-html"]):
        at = command.index(flags[0])
        assert command[at : at + len(flags)] == flags
    assert "--accept-low-accuracy" in command and "--resume" not in command


def test_a_manifest_row_overrides_the_zoo_wide_fields(tmp_path):
    request = zoo_request(tmp_path)
    model = ZooModel(
        "b", tmp_path / "b.pt", data=tmp_path / "own", attack="sig:target=1", format="state_dict",
        arch="wrn10-1",
    )  # fmt: skip
    job = model_request(model, request)
    assert (job.data, job.attack) == ((tmp_path / "own").resolve(), "sig:target=1")
    assert (job.format, job.arch) == ("state_dict", "wrn10-1")


def test_a_started_model_resumes_and_is_still_the_same_job(tmp_path):
    request = zoo_request(tmp_path)
    model = ZooModel("a", tmp_path / "zoo" / "a.pth.tar")
    folder = model_folder(model, request.out)
    (folder / "a.purified.pth.work").mkdir(parents=True)
    job = model_job(model, request)
    assert job.arguments[-1] == "--resume" and job.log == folder / LOG
    assert command_signature(job.arguments) == command_signature(model_command(model, request))


def test_finished_and_failed_read_the_command_back(tmp_path):
    request = zoo_request(tmp_path)
    model = ZooModel("a", tmp_path / "zoo" / "a.pth.tar")
    model.path.parent.mkdir()
    model.path.write_bytes(b"model")
    folder = model_folder(model, request.out)
    folder.mkdir(parents=True)
    (folder / LOG).write_text("$ purify " + " ".join(model_command(model, request)) + "\n")
    (folder / "a.purified.pth.tar.report.json").write_text("{}")
    assert finished(model, request)
    failure = {
        "signature": command_signature(model_command(model, request)),
        "exit_code": BAD_INPUT_EXIT,
        "input": input_stamp(model.path),
    }
    (folder / FAILED).write_text(json.dumps(failure))
    assert failed_for_good(model, request)
    other = ZooRequest(request.zoo, request.out, request.template, seed=1, device="cpu")
    assert not finished(model, other) and not failed_for_good(model, other)
