"""`purify zoo` end to end on 4 tiny models in mixed formats, one of them corrupt: the same rows
from `local` at 1 and 2 jobs and from `ray` (a local cluster declaring 2 fake GPUs), the corrupt
model a row with its error, never more jobs at once than asked, one GPU per running job, a re-run
that submits nothing, and a run interrupted mid-way (Ctrl-C to the driver, on either executor)
that leaves no job running and resumes to the uninterrupted result."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from purify_backdoor.executors import LocalExecutor, RayExecutor
from purify_backdoor.plugin_types import RunContext
from purify_backdoor.purification import PurifyRequest
from purify_backdoor.zoo.inventory import read_zoo
from purify_backdoor.zoo.jobs import ZooRequest, finished
from purify_backdoor.zoo.pipeline import run_zoo
from tests.conftest import tiny_wideresnet, write_image_folder
from tests.plugins.test_cli import invoke
from tests.plugins.test_work_folder import killed_run_on

EPOCHS = 50  # long enough to interrupt a model between its epochs
ATTACK = "badnet:pattern=grid,target=5"
TIMING = ("defense_time_s", "wall_time_s", "peak_rss_mib")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("zoo")
    data = root / "data"
    write_image_folder(data / "train", 200, seed=0)
    write_image_folder(data / "test", 100, seed=1)
    models = root / "models"
    models.mkdir()
    torch.save({"epoch": 1, "state_dict": tiny_wideresnet(0).state_dict()}, models / "a.pth.tar")
    torch.save(tiny_wideresnet(1).state_dict(), models / "b.pth")
    tensors = {key: value.contiguous() for key, value in tiny_wideresnet(2).state_dict().items()}
    save_file(tensors, models / "c.safetensors")
    whole = (models / "a.pth.tar").read_bytes()
    (models / "d.pth.tar").write_bytes(whole[: len(whole) // 2])
    return models, data


def request(zoo: tuple[Path, Path], out: Path) -> ZooRequest:
    models, data = zoo
    template = PurifyRequest(
        model_path=models, plugin="finetune", options={"epochs": EPOCHS}, data=data,
        attack=ATTACK, arch="wrn10-1", ratio=0.5,
    )  # fmt: skip
    return ZooRequest(zoo=models, out=out, template=template, device="cpu")


def context() -> RunContext:
    return RunContext(device=torch.device("cpu"), seed=0, quiet=True)


def results(rows: list[dict]) -> list[dict]:
    """The rows without what depends on the machine's load."""
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def most_at_once(outcomes) -> int:
    events = sorted([(o.started, 1) for o in outcomes] + [(o.ended, -1) for o in outcomes])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def overlapping(outcomes):
    return [
        (first, second)
        for index, first in enumerate(outcomes)
        for second in outcomes[index + 1 :]
        if first.started < second.ended and second.started < first.ended
    ]


@pytest.fixture(scope="module")
def reference(zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    return out, run_zoo(request(zoo, out), LocalExecutor(jobs=1, threads=1), context())


def test_one_job_at_a_time_purifies_the_good_models_and_reports_the_corrupt_one(reference):
    out, run = reference
    by_name = {row["name"]: row for row in run.rows}
    assert [row["name"] for row in run.rows] == ["a", "b", "c", "d"]
    for name, fmt in (("a", "nad"), ("b", "state_dict"), ("c", "safetensors")):
        row = by_name[name]
        assert (row["status"], row["format"], row["error"]) == ("purified", fmt, None)
        assert 0 <= row["clean_acc"] <= 1 and 0 <= row["asr"] <= 1
        assert (out / row["report"]).is_file()
    assert by_name["d"]["status"] == "failed"
    assert "truncated or damaged" in by_name["d"]["error"]
    assert [row["name"] for row in run.failed] == ["d"]
    assert (out / "a" / "a.purified.pth.tar").is_file()
    assert (out / "c" / "c.purified.safetensors").is_file()
    assert most_at_once(run.outcomes) == 1
    assert list(csv.DictReader((out / "zoo.csv").open()))[3]["status"] == "failed"
    assert "4 models: 1 failed, 3 purified" in (out / "zoo.md").read_text()
    page = (out / "zoo.html").read_text()
    assert f'href="{by_name["a"]["html"]}"' in page and (out / by_name["a"]["html"]).is_file()
    assert "data:image/png;base64," in page  # the ASR-against-clean plot of the badnet models


def test_a_rerun_submits_nothing_and_keeps_the_rows(zoo, reference):
    out, run = reference
    again = run_zoo(request(zoo, out), LocalExecutor(jobs=1, threads=1), context())
    assert again.outcomes == []
    assert again.rows == run.rows


def test_a_model_file_newer_than_its_report_is_not_finished(zoo, reference):
    out, _ = reference
    models = {model.name: model for model in read_zoo(zoo[0], exclude=out)}
    asked = request(zoo, out)
    assert finished(models["a"], asked) and finished(models["b"], asked)
    path = models["a"].path
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, time.time_ns() + 10**10))  # replaced after its report
    try:
        assert not finished(models["a"], asked) and finished(models["b"], asked)
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_two_local_jobs_give_the_same_rows_one_gpu_each(zoo, reference, tmp_path):
    executor = LocalExecutor(jobs=2, threads=1, gpus=["0", "1"])
    run = run_zoo(request(zoo, tmp_path), executor, context())
    assert results(run.rows) == results(reference[1].rows)
    assert most_at_once(run.outcomes) <= 2
    assert {o.gpus for o in run.outcomes} == {"0", "1"}
    assert all(a.gpus != b.gpus for a, b in overlapping(run.outcomes))


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, num_gpus=2, log_to_driver=False)  # the GPUs are declared, not real
        yield ray
        ray.shutdown()


def test_ray_gives_the_same_rows_with_ray_pinning_the_gpus(zoo, reference, ray_cluster, tmp_path):
    run = run_zoo(request(zoo, tmp_path), RayExecutor(jobs=2, cpus=1, gpus=1), context())
    assert results(run.rows) == results(reference[1].rows)
    assert ray_cluster.is_initialized()  # a cluster it did not start is left running
    assert most_at_once(run.outcomes) <= 2
    assert {o.gpus for o in run.outcomes} <= {"0", "1"}
    assert all(a.gpus != b.gpus for a, b in overlapping(run.outcomes))


def running_processes(mentioning: Path) -> list[str]:
    """Command lines of this machine's processes that name `mentioning`: a job left running
    after its driver was interrupted would show here."""
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(mentioning) in line:
            lines.append(line)
    return lines


def zoo_command(zoo: tuple[Path, Path], out: Path) -> list[str]:
    models, data = zoo
    return [
        "zoo", str(models), "--plugin", "finetune", "--epochs", str(EPOCHS), "--data", str(data),
        "--attack", ATTACK, "--arch", "wrn10-1", "--ratio", "0.5", "--device", "cpu",
        "--out", str(out), "--cpus-per-task", "1", "-q",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("executor", "sent"),
    [("local", signal.SIGINT), ("ray", signal.SIGINT), ("local", signal.SIGTERM)],
    ids=["local", "ray", "local-SIGTERM"],
)
def test_an_interrupted_zoo_resumes_to_the_uninterrupted_result(
    zoo, reference, tmp_path, executor, sent
):
    out = tmp_path / "out"
    command = [*zoo_command(zoo, out), "--executor", executor, "--jobs", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "purify_backdoor", *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, RAY_AUTH_MODE="disabled"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    state = out / "b" / "b.purified.pth.work" / "finetune.state.pt"
    deadline = time.monotonic() + 180
    while not state.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "model b never started"
        time.sleep(0.01)
    process.send_signal(sent)  # SIGTERM: `kill PID`, e.g. of a background job that ignores SIGINT
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Re-run the same command to resume" in stderr.strip().splitlines()[-1]
    rows = {row["name"]: row for row in csv.DictReader((out / "zoo.csv").open())}
    assert rows["a"]["status"] == "purified" and rows["b"]["status"] == "not run"
    assert state.exists() and not (out / "b" / "b.purified.pth").exists()

    assert not any("purify_backdoor" in line for line in running_processes(out))

    resumed = invoke(*command)
    assert resumed.exit_code == 2 and "1 of 4 models failed, first d" in resumed.stderr
    assert (out / "b" / "purify.log").read_text().splitlines()[0].endswith("--resume")
    rows = list(csv.DictReader((out / "zoo.csv").open()))
    expected = list(csv.DictReader((reference[0] / "zoo.csv").open()))
    assert results(rows) == results(expected)
    for name, file in (("a", "a.purified.pth.tar"), ("b", "b.purified.pth")):
        mine = torch.load(out / name / file, weights_only=True)
        theirs = torch.load(reference[0] / name / file, weights_only=True)
        mine = mine.get("state_dict", mine)
        theirs = theirs.get("state_dict", theirs)
        assert all(torch.equal(mine[key], theirs[key]) for key in theirs)


def test_a_model_replaced_under_its_name_is_purified_afresh_not_resumed(tmp_path, tiny_data):
    """Issue #45, item 2: a run on model A killed mid-way leaves A's state in the zoo's output;
    B put in A's place is then purified from scratch (the job says so in its log), not resumed
    from A's state, although the driver adds --resume."""
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    zoo.mkdir()
    model = zoo / "m.pth.tar"
    torch.save({"epoch": 1, "state_dict": tiny_wideresnet(0).state_dict()}, model)
    (out / "m").mkdir(parents=True)
    workdir = killed_run_on(model, tiny_data, out / "m" / "m.purified.pth.tar")
    torch.save({"epoch": 1, "state_dict": tiny_wideresnet(1).state_dict()}, model)

    def zoo_run(into: Path) -> dict[str, torch.Tensor]:
        flags = ("--data", tiny_data, "--ratio", "0.5", "--seed", "3", "-q")
        result = invoke("zoo", zoo, "--plugin", "finetune", "--out", into, "--epochs", 12, *flags)
        assert result.exit_code == 0, result.output
        return torch.load(into / "m" / "m.purified.pth.tar", weights_only=True)["state_dict"]

    replaced = zoo_run(out)
    log = (out / "m" / "purify.log").read_text()
    assert log.splitlines()[0].endswith("--resume") and "starting afresh" in log
    assert not workdir.exists()
    fresh = zoo_run(tmp_path / "fresh")
    assert all(torch.equal(value, replaced[key]) for key, value in fresh.items())
