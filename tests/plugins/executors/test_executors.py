"""Choosing an executor from the command line's flags, and the errors a wrong choice gets."""

from __future__ import annotations

import sys

import pytest

from purify_backdoor.errors import PurifyError
from purify_backdoor.executors import LocalExecutor, RayExecutor, make_executor, visible_gpus
from purify_backdoor.executors.job import Job, command_signature, error_line, logged_command
from tests.plugins.test_cli import assert_one_line_error, invoke


def test_local_is_one_job_at_a_time_by_default_and_spreads_jobs_over_the_visible_gpus(
    monkeypatch,
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    executor = make_executor("local", jobs=4, device="auto", cpus_per_task=2)
    assert isinstance(executor, LocalExecutor)
    assert (executor.jobs, executor.threads, executor.gpus) == (4, 2, ["2", "3"])
    assert make_executor("local", device="cpu").jobs == 1
    assert make_executor("local", device="cpu").gpus == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus("auto") == []


def test_ray_takes_its_task_resources():
    executor = make_executor("ray", jobs=3, address="ray://head:10001", gpus_per_task=0.5)
    assert isinstance(executor, RayExecutor)
    assert (executor.jobs, executor.cpus, executor.gpus) == (3, 1.0, 0.5)
    assert executor.address == "ray://head:10001"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"name": "local", "jobs": 0}, "--jobs must be at least 1"),
        ({"name": "local", "address": "auto"}, "--address is for --executor ray"),
        ({"name": "ray", "device": "cpu", "gpus_per_task": 1}, "--gpus-per-task with --device cpu"),
        ({"name": "dask"}, "unknown executor 'dask'"),
    ],
)
def test_wrong_executor_flags_are_one_clear_error(arguments, fragment):
    with pytest.raises(PurifyError, match=fragment):
        make_executor(**arguments)


def test_zoo_on_ray_without_ray_names_the_extra(monkeypatch, tmp_path, nad_checkpoint):
    monkeypatch.setitem(sys.modules, "ray", None)  # what a missing package looks like to import
    result = invoke(
        "zoo", nad_checkpoint.parent, "--plugin", "clp", "--out", tmp_path / "out",
        "--executor", "ray", "-q",
    )  # fmt: skip
    assert_one_line_error(result, "needs the Ray package", "pip install 'purify-backdoor[ray]'")
    assert not (tmp_path / "out").exists()


def test_a_signature_ignores_where_and_whether_a_job_resumes(tmp_path):
    command = ["run", "--plugin", "medic", "m.pt", "--device", "cuda:1", "--resume"]
    assert command_signature(command) == "run --plugin medic m.pt"
    log = tmp_path / "job.log"
    log.write_text("$ purify " + " ".join(command) + "\nError: bad model; fix it\n")
    assert logged_command(log) == "run --plugin medic m.pt"
    assert logged_command(tmp_path / "missing.log") is None
    assert error_line(log, 2) == "bad model; fix it"
    assert error_line(log, 130) == "interrupted"
    assert "signal 9" in error_line(log, -9)
    assert Job("k", tuple(command), log).arguments[-1] == "--resume"
