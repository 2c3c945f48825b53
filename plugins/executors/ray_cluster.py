"""The Ray executor: one Ray task per job on a local Ray instance (started on demand) or on an
existing cluster (`--address`, or RAY_ADDRESS). Tasks receive paths and arguments, never tensors,
so every node must see the same files at the same paths (a shared filesystem) and have purify
installed; the driver gathers the outcomes and alone writes summaries. On Ctrl-C the driver asks
each running job to stop through a file beside its log (see `stop_file`), waits for the tasks to
end, and cancels only those that do not."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from purify_backdoor.errors import PurifyError
from purify_backdoor.executors.job import STOP_GRACE_S, Job, Outcome, run_job, stop_file

EXTRA = "pip install 'purify-backdoor[ray]'"
WAIT_S = 0.5


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PurifyError(
            f"--executor ray needs the Ray package; install it with {EXTRA}"
        ) from None
    return ray


class RayExecutor:
    """`cpus` and `gpus` are each task's Ray resources (fractions allowed; Ray sets
    CUDA_VISIBLE_DEVICES for the task); `jobs` caps the tasks in flight (0: as many as the cluster
    fits)."""

    name = "ray"

    def __init__(
        self, address: str | None = None, jobs: int = 0, cpus: float = 1.0, gpus: float = 0.0
    ):
        self.address = address
        self.jobs = jobs
        self.cpus = cpus
        self.gpus = gpus

    def describe(self) -> str:
        where = self.address or "a local Ray instance (or RAY_ADDRESS)"
        cap = f"at most {self.jobs} at once, " if self.jobs else ""
        return f"ray on {where}, {cap}{self.cpus:g} CPU and {self.gpus:g} GPU per task"

    def run(self, jobs: Iterable[Job], on_done: Callable[[Outcome], None]) -> list[Outcome]:
        pending = list(jobs)
        if not pending:  # a re-run with nothing left to do starts no cluster
            return []
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as error:
                detail = " ".join(str(error).split())[:160]
                raise PurifyError(
                    f"cannot reach the Ray cluster at {self.address or 'RAY_ADDRESS'} ({detail}); "
                    f"check --address, or drop it to start a local Ray instance"
                ) from None
        task = ray.remote(run_job).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0, retry_exceptions=False
        )
        threads = max(1, int(self.cpus))
        flying, outcomes = {}, []
        cap = self.jobs or len(pending) or 1
        for job in pending:
            stop_file(job).unlink(missing_ok=True)  # left by an interrupted run
        try:
            while pending or flying:
                while pending and len(flying) < cap:
                    job = pending.pop(0)
                    flying[task.remote(job, threads)] = job
                ready: list = []
                while not ready:  # short waits: a Ctrl-C is seen between them, not after a task
                    ready, _ = ray.wait(list(flying), num_returns=1, timeout=WAIT_S)
                job = flying.pop(ready[0])
                outcome = self._gather(ray, ready[0], job)
                outcomes.append(outcome)
                on_done(outcome)
        except BaseException:
            for job in flying.values():  # each running job stops the Ctrl-C way, its state kept
                stop_file(job).touch()
            if flying:
                _, left = ray.wait(list(flying), num_returns=len(flying), timeout=STOP_GRACE_S)
                for ref in left:
                    ray.cancel(ref)
            raise
        finally:
            if started_here:
                ray.shutdown()
        return outcomes

    @staticmethod
    def _gather(ray: Any, ref: Any, job: Job) -> Outcome:
        """A task that died (its worker lost, its node gone) is a failed job, not a failed run."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            return Outcome(job.key, -1, f"Ray task failed: {first[:200]}", 0.0, 0.0, None)
