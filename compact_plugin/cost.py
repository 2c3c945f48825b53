"""What compression buys: parameters, weight bytes, FLOPs (torch's FlopCounterMode, one image)
and CPU inference latency (torch.utils.benchmark, median over repeated runs)."""

from __future__ import annotations

import copy

import torch
import torch.utils.benchmark as benchmark
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def model_cost(model: nn.Module, size: tuple[int, int], batch: int = 64) -> dict[str, float]:
    model = copy.deepcopy(model).cpu().eval()
    image = torch.rand(1, 3, *size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(image)
    timer = benchmark.Timer("model(x)", globals={"model": model, "x": torch.rand(batch, 3, *size)})
    return {
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "weight_bytes": sum(
            tensor.numel() * tensor.element_size()
            for tensor in [*model.parameters(), *model.buffers()]
        ),
        "flops": counter.get_total_flops(),
        f"cpu_latency_ms_batch{batch}": 1000 * timer.blocked_autorange(min_run_time=1.0).median,
    }
