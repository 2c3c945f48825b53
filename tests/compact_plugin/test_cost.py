"""What compression buys, measured: the counts follow the model, the latency is a positive time
taken on one thread, the caller's thread count comes back, and no CUDA warning is printed on the
way (torch.utils.benchmark is not imported)."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch import nn

from purify_backdoor.compact.cost import model_cost


def test_counts_latency_and_threads():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    before = torch.get_num_threads()
    cost = model_cost(model, (8, 8), batch=2)
    assert torch.get_num_threads() == before
    assert cost["parameters"] == 3 * 4 * 9 + 4 + 144 * 2 + 2
    assert cost["weight_bytes"] == 4 * cost["parameters"]
    assert cost["flops"] == 2 * (4 * 6 * 6 * 27 + 144 * 2)
    assert 0 < cost["cpu_latency_ms_batch2"] < 1000


def test_measuring_prints_nothing_and_imports_no_timer_module():
    code = (
        "import sys, torch; from torch import nn; "
        "from purify_backdoor.compact.cost import model_cost; "
        "model_cost(nn.Conv2d(3, 1, 1), (4, 4), batch=1); "
        "print('torch.utils.benchmark' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False" and done.stderr == ""
