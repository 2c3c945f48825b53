"""What compression buys: parameters, weight bytes, FLOPs (torch's FlopCounterMode, one image)
and CPU inference latency (median over repeated runs on one thread)."""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MIN_RUN_TIME_S = 1.0
MIN_RUNS = 5


def median_latency_s(model: nn.Module, inputs: torch.Tensor) -> float:
    """One forward pass's median time on one thread, as torch.utils.benchmark's Timer measures by
    default; timed here because importing that module prints a CUDA warning into every C&C run
    on a machine without CUDA."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model(inputs)  # warm-up
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < MIN_RUNS or time.perf_counter() - started < MIN_RUN_TIME_S:
            begin = time.perf_counter()
            model(inputs)
            times.append(time.perf_counter() - begin)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


@torch.no_grad()
def model_cost(model: nn.Module, size: tuple[int, int], batch: int = 64) -> dict[str, float]:
    model = copy.deepcopy(model).cpu().eval()
    image = torch.rand(1, 3, *size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(image)
    return {
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "weight_bytes": sum(
            tensor.numel() * tensor.element_size()
            for tensor in [*model.parameters(), *model.buffers()]
        ),
        "flops": counter.get_total_flops(),
        f"cpu_latency_ms_batch{batch}": 1000 * median_latency_s(model, torch.rand(batch, 3, *size)),
    }
