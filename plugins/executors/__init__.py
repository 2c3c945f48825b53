"""Where `purify zoo` and `purify bench` run their jobs: `local` (processes on this machine, the
default) or `ray` (a Ray cluster). Both take the same `Job`s and hand back the same `Outcome`s."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Protocol

from purify_backdoor.errors import PurifyError
from purify_backdoor.executors.job import Job, Outcome
from purify_backdoor.executors.local import LocalExecutor
from purify_backdoor.executors.ray_cluster import RayExecutor, import_ray

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    name: str

    def describe(self) -> str: ...

    def run(self, jobs: Iterable[Job], on_done: Callable[[Outcome], None]) -> list[Outcome]: ...


def visible_gpus(device: str) -> list[str]:
    """The GPUs local jobs are spread over: none when the jobs run on the CPU or on one GPU the
    user named (`cuda:1`), else the ones CUDA_VISIBLE_DEVICES names (or all that torch sees)."""
    if device == "cpu" or device.startswith("cuda:"):
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [gpu.strip() for gpu in named.split(",") if gpu.strip() and gpu.strip() != "-1"]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def make_executor(
    name: str,
    jobs: int | None = None,
    device: str = "auto",
    address: str | None = None,
    cpus_per_task: float | None = None,
    gpus_per_task: float | None = None,
) -> Executor:
    """The executor the command line asks for. `jobs` caps the jobs at once (local default 1;
    ray default: as many as the cluster fits)."""
    if jobs is not None and jobs < 1:
        raise PurifyError(f"--jobs must be at least 1 (got {jobs})")
    if name == "local":
        if address:
            raise PurifyError("--address is for --executor ray; drop it or add --executor ray")
        threads = None if cpus_per_task is None else max(1, int(cpus_per_task))
        return LocalExecutor(jobs or 1, threads, visible_gpus(device))
    if name == "ray":
        if device == "cpu" and gpus_per_task:
            raise PurifyError("--gpus-per-task with --device cpu; drop one of them")
        import_ray()  # before anything is written
        return RayExecutor(address, jobs or 0, cpus_per_task or 1.0, gpus_per_task or 0.0)
    raise PurifyError(f"unknown executor '{name}'; use one of: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "Job", "LocalExecutor", "Outcome", "RayExecutor"]
