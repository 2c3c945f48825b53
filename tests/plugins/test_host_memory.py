import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, ctypes.util, resource, sys, torch
from purify_backdoor import host_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
for setting in (host_memory.M_MMAP_THRESHOLD, host_memory.M_TRIM_THRESHOLD):
    libc.mallopt(setting, 128 << 10)  # glibc's documented start values, whatever ran before
kept = host_memory.keep_freed_memory() if sys.argv[1] == "keep" else None
def step():  # a training step's shape: tensors of 1 to 4 MiB, all alive, then all freed
    held = [torch.empty(size << 18).fill_(1) for size in (4, 4, 2, 2, 1, 1) * 4]
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_tensors_are_reused_without_page_faults():
    kept, kept_faults = page_faults("keep")
    _, default_faults = page_faults("default")
    assert kept == "True"
    # 10 steps of 56 MiB from the kernel are 143,360 page faults; reused memory needs none.
    # glibc raises its thresholds as it goes, so the default case starts from fixed values.
    assert kept_faults < 1000 < 100_000 < default_faults
