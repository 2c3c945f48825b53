"""The embedded executor: up to N `purify` processes at once on this machine, each pinned to one
GPU (round robin over the visible ones) when there are GPUs."""

from __future__ import annotations

import os
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from purify_backdoor.executors.job import (
    Job,
    Outcome,
    finish_job,
    job_environment,
    start_job,
    stop_job,
)

POLL_S = 0.05


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    started: float
    slot: int
    gpus: str | None


class LocalExecutor:
    """`jobs` worker slots; slot k runs on GPU `gpus[k % len(gpus)]`, so concurrent jobs spread
    over the GPUs. `threads` is each job's CPU thread count."""

    name = "local"

    def __init__(self, jobs: int = 1, threads: int | None = None, gpus: list[str] | None = None):
        self.jobs = max(1, jobs)
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.jobs)
        self.gpus = list(gpus or [])

    def describe(self) -> str:
        pinning = f", GPUs {','.join(self.gpus)} round robin" if self.gpus else ""
        return f"local, {self.jobs} at once, {self.threads} thread(s) each{pinning}"

    def run(self, jobs: Iterable[Job], on_done: Callable[[Outcome], None]) -> list[Outcome]:
        """Run every job; `on_done` sees each outcome as it arrives (in completion order). On
        Ctrl-C the running jobs are stopped the Ctrl-C way (their state kept) and it passes on."""
        pending, running, outcomes = deque(jobs), [], []
        free = list(range(self.jobs))
        try:
            while pending or running:
                while pending and free:
                    slot = free.pop(0)
                    job = pending.popleft()
                    gpus = self.gpus[slot % len(self.gpus)] if self.gpus else None
                    process = start_job(job, job_environment(self.threads, gpus))
                    running.append(_Running(job, process, time.time(), slot, gpus))
                still = []
                for item in running:
                    code = item.process.poll()
                    if code is None:
                        still.append(item)
                        continue
                    free.append(item.slot)
                    outcome = finish_job(item.job, code, item.started, item.gpus)
                    outcomes.append(outcome)
                    on_done(outcome)
                running = still
                if running:
                    time.sleep(POLL_S)
        except BaseException:
            for item in running:
                stop_job(item.process)
            raise
        return outcomes
