"""One unit of distributed work: a `purify` command line, its log, and what came of it. Jobs carry
paths and arguments only, never tensors, so any executor can ship them to another process or
machine; every job runs as its own `purify` process, so a crash or a memory blow-up stays in its
job and the exact command is the first line of its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from purify_backdoor.purification import BROKEN_EXIT, UNCHANGED_EXIT
from purify_backdoor.work_folder import JOB_ENV  # set in every job's environment (see __main__.py)

# How long a job stopped by Ctrl-C gets to save its state and exit before it is killed.
STOP_GRACE_S = 30.0
INTERRUPTED_EXIT = 130
STOP_POLL_S = 0.2


@dataclass(frozen=True)
class Job:
    """`purify ARGUMENTS`, logged to `log`; `key` names it in progress lines and summaries. Run
    in `cwd` when given: a bench grid's commands name paths relative to the grid file, so its
    logs, and the finished-cell check that reads them, do not depend on where it lies."""

    key: str
    arguments: tuple[str, ...]
    log: Path
    cwd: Path | None = None


@dataclass(frozen=True)
class Outcome:
    """What a job ended with, and where and when it ran (the pinning and concurrency checks read
    `gpus`, `started` and `ended`)."""

    key: str
    exit_code: int
    error: str | None
    started: float
    ended: float
    gpus: str | None

    @property
    def ok(self) -> bool:
        return is_result(self.exit_code)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def is_result(exit_code: int) -> bool:
    """Purified, left unchanged by a defense that found nothing, or left near chance by one that
    broke the model: each is a measured result with its report."""
    return exit_code in (0, UNCHANGED_EXIT, BROKEN_EXIT)


def job_environment(threads: int, gpus: str | None) -> dict[str, str]:
    """The job's environment: this one, with its thread count (results are bit-identical only
    between runs with the same count) and, when given, the GPUs it may see. A thread count the
    user set in OMP_NUM_THREADS wins."""
    env = dict(os.environ, **{JOB_ENV: "1"})
    env.setdefault("OMP_NUM_THREADS", str(threads))
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return env


def start_job(job: Job, env: dict[str, str]) -> subprocess.Popen:
    """Start the job's process in its own session: a Ctrl-C reaches only the driver, which stops
    each job once (see `stop_job`), instead of every process of the terminal at once."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with job.log.open("w") as handle:
        handle.write("$ purify " + " ".join(job.arguments) + "\n")
        handle.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "purify_backdoor", *job.arguments],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=job.cwd,
            start_new_session=True,
        )


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill PID`) reaches a driver (bench, zoo) as a Ctrl-C does: its jobs run in their
    own sessions, so a driver that simply died would leave them running, orphaned, writing to
    the outputs a re-run also writes to. A background job of a script ignores SIGINT, which
    leaves SIGTERM as the way to stop it."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_job(process: subprocess.Popen) -> None:
    """Ctrl-C for one job: SIGINT lets it keep its last per-epoch state (`--resume`), then it is
    killed if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def finish_job(job: Job, exit_code: int, started: float, gpus: str | None) -> Outcome:
    error = None if is_result(exit_code) else error_line(job.log, exit_code)
    return Outcome(job.key, exit_code, error, started, time.time(), gpus)


def error_line(log: Path, exit_code: int) -> str:
    """The job's one-line error (purify's `Error: ...`), else its last output line."""
    if exit_code == INTERRUPTED_EXIT:
        return "interrupted"
    if exit_code < 0:
        return f"killed by signal {-exit_code} (out of memory?)"
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    errors = [line for line in lines[1:] if line.startswith("Error:")]
    return (errors or lines[1:] or [f"exit status {exit_code}"])[-1].removeprefix("Error: ")


def stop_file(job: Job) -> Path:
    """A file beside the job's log whose appearance asks a remote job to stop the Ctrl-C way: a
    driver reaches a job on another node through the shared filesystem, and the job then ends
    as a normal task, its state kept, instead of being killed with its worker."""
    return job.log.with_name(job.log.name + ".stop")


def run_job(job: Job, threads: int, gpus: str | None = None) -> Outcome:
    """Run a job to its end in this process's place (what a Ray task does). It is stopped the
    Ctrl-C way when its stop file appears, or when an interruption reaches this process."""
    gpus = gpus if gpus is not None else os.environ.get("CUDA_VISIBLE_DEVICES")
    started = time.time()
    if stop_file(job).exists():  # stopped before it started
        return Outcome(job.key, INTERRUPTED_EXIT, "interrupted", started, started, gpus)
    process = start_job(job, job_environment(threads, gpus))
    try:
        while True:
            try:
                exit_code = process.wait(timeout=STOP_POLL_S)
                break
            except subprocess.TimeoutExpired:
                if stop_file(job).exists():
                    stop_job(process)
    except BaseException:
        stop_job(process)
        raise
    return finish_job(job, exit_code, started, gpus)


def option_assignments(options: dict) -> list[str]:
    """Plugin options as `-o key=value` flags of a `purify` command line."""
    flags = []
    for key, value in options.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        flags += ["-o", f"{key}={text}"]
    return flags


def command_signature(arguments: list[str] | tuple[str, ...]) -> str:
    """What decides a job's result: its command without --resume and --device (where it runs
    and whether it continues do not change what it computes)."""
    kept = [a for a in arguments if a != "--resume"]
    if "--device" in kept:
        at = kept.index("--device")
        del kept[at : at + 2]
    return " ".join(kept)


def logged_command(log: Path) -> str | None:
    """The signature of the command a job's log says it ran, or None when there is no log."""
    try:
        with log.open() as handle:
            first = handle.readline()
    except OSError:
        return None
    if not first.startswith("$ purify "):
        return None
    return command_signature(first.removeprefix("$ purify ").rstrip("\n").split(" "))
