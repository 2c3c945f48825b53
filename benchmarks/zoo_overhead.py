"""What an executor costs: wall time of `purify zoo` over a zoo of WRN-16-1 models (copies of
the shared NAD checkpoint, each nudged so no two share an evaluation cache entry) with a short
fine-tune, at 1 and 2 jobs on `local` and `ray`, against the same `purify run` commands typed
one by one (twice, interleaved: their mean is the baseline, their spread the noise). The
per-model overhead is (zoo wall - one-by-one wall) / models at 1 job, both at the same thread
count; the target is under 5% of a 1-minute model (3 s). It is split into the fixed cost (the
driver's start-up and
summary, timed by re-running the finished zoo, and for ray a local cluster's start and stop) and
the marginal cost per model that remains.

    python benchmarks/zoo_overhead.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from inputs import SHARED_ATTACK, add_input_arguments
from recorded import ROOT, portable, portable_command

from purify_backdoor.purification import PurifyRequest
from purify_backdoor.report import package_versions
from purify_backdoor.zoo.inventory import read_zoo
from purify_backdoor.zoo.jobs import ZooRequest, model_command

RAY_START_STOP = "import ray; ray.init(log_to_driver=False); ray.shutdown()"


def make_zoo(checkpoint: Path, folder: Path, count: int) -> None:
    """`count` distinct WRN-16-1 models: the shared one with a 1e-6 nudge to one weight each."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for index in range(count):
        state = {key: value.clone() for key, value in payload["state_dict"].items()}
        state["fc.bias"][0] += 1e-6 * (index + 1)
        torch.save(payload | {"state_dict": state}, folder / f"wrn{index}.pth.tar")


def zoo_arguments(args: argparse.Namespace, zoo: Path, out: Path) -> list[str]:
    return [
        "zoo", str(zoo), "--plugin", "finetune", "--epochs", str(args.epochs),
        "--data", str(args.data), "--attack", SHARED_ATTACK, "--device", "cpu",
        "--out", str(out), "-q",
    ]  # fmt: skip


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    code = subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_input_arguments(parser)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tune epochs per model")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "zoo-bench")
    parser.add_argument("--json", type=Path, default=ROOT / "docs/results/zoo_overhead.json")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    shutil.rmtree(args.work, ignore_errors=True)
    zoo = args.work / "zoo"
    make_zoo(args.model, zoo, args.models)
    cache = args.work / "cache"
    env = dict(os.environ, PURIFY_CACHE=str(cache), RAY_AUTH_MODE="disabled")
    env.pop("OMP_NUM_THREADS", None)  # each executor sets its jobs' thread count
    purify = [sys.executable, "-m", "purify_backdoor"]
    subprocess.run([*purify, "eval", str(args.model), "--data", str(args.data), "-q"], env=env)

    def fresh(name: str) -> Path:
        """A new output folder, and no cached evaluations: every run evaluates its models."""
        shutil.rmtree(cache / "evaluations", ignore_errors=True)
        return args.work / name

    template = PurifyRequest(
        model_path=zoo, plugin="finetune", options={"epochs": args.epochs}, data=args.data,
        attack=SHARED_ATTACK,
    )  # fmt: skip
    request = ZooRequest(zoo=zoo, out=args.work, template=template, device="cpu")
    rows = []

    def by_hand(threads: int) -> None:
        out = fresh(f"by-hand-{len(rows)}")
        started = time.perf_counter()
        for model in read_zoo(zoo):
            (out / model.name).mkdir(parents=True)
            command = model_command(model, replace(request, out=out))
            timed([*purify, *command], env | {"OMP_NUM_THREADS": str(threads)})
        wall = time.perf_counter() - started
        rows.append({"executor": "one by one", "jobs": 1, "threads": threads, "wall_s": wall})
        print(f"one by one, {threads} thread(s): {wall:.1f} s", flush=True)

    def executor(name: str, jobs: int) -> None:
        threads = max(1, cores // jobs)
        out = fresh(f"{name}-{jobs}")
        command = zoo_arguments(args, zoo, out) + ["--executor", name, "--jobs", str(jobs)]
        command += ["--cpus-per-task", str(threads)]
        wall = timed([*purify, *command], env)
        # the same command again submits nothing: the driver's own start-up and summary
        idle = timed([*purify, *command], env)
        row = {"executor": name, "jobs": jobs, "threads": threads, "wall_s": wall}
        row["driver_s"] = idle
        if name == "ray":  # a re-run starts no cluster: time the local cluster's start and stop
            row["cluster_s"] = timed([sys.executable, "-c", RAY_START_STOP], env)
        rows.append(row | {"command": portable_command(command)})
        print(f"{name}, {jobs} job(s): {wall:.1f} s", flush=True)

    for jobs in (1, 2):  # one by one before each pair: their spread is the machine's noise
        by_hand(cores)
        for name in ("local", "ray"):
            executor(name, jobs)

    hand = [r["wall_s"] for r in rows if r["executor"] == "one by one"]
    baseline = statistics.fmean(hand)
    single = {r["executor"]: r["wall_s"] for r in rows if r["jobs"] == 1 and "driver_s" in r}
    for row in rows:
        if row["executor"] in single and row["jobs"] == 1:
            fixed = row["driver_s"] + row.get("cluster_s", 0.0)
            row["overhead_per_model_s"] = (row["wall_s"] - baseline) / args.models
            row["fixed_s"] = fixed
            row["marginal_per_model_s"] = (row["wall_s"] - baseline - fixed) / args.models
            row["per_model_s_in_100_model_zoo"] = row["marginal_per_model_s"] + fixed / 100
        if row["jobs"] == 2:
            row["speedup_vs_1_job"] = single[row["executor"]] / row["wall_s"]
    print(f"\none by one: {' and '.join(f'{h:.1f}' for h in hand)} s (mean {baseline:.1f} s)")
    print("| executor | jobs | wall (s) | overhead/model (s) | fixed (s) | marginal/model (s) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        if row["executor"] == "one by one":
            continue
        cells = [
            row.get("overhead_per_model_s"),
            row.get("fixed_s"),
            row.get("marginal_per_model_s"),
        ]
        text = ["-" if value is None else f"{value:+.2f}" for value in cells]
        speedup = row.get("speedup_vs_1_job")
        jobs = f"{row['jobs']}" + (f" ({speedup:.2f}x)" if speedup else "")
        print(f"| {row['executor']} | {jobs} | {row['wall_s']:.1f} | " + " | ".join(text) + " |")
    result = {
        "command": "python benchmarks/zoo_overhead.py "
        f"--models {args.models} --epochs {args.epochs}",
        "machine": f"{cores} CPU cores, no GPU",
        "models": args.models,
        "model": portable(args.model),
        "data": portable(args.data),
        "defense": f"finetune, {args.epochs} epochs, 5% clean data",
        "one_by_one_s": hand,
        "baseline_one_by_one_s": baseline,
        "noise_per_model_s": (max(hand) - min(hand)) / args.models,
        "rows": rows,
        "versions": package_versions(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {portable(args.json)}")


if __name__ == "__main__":
    main()
