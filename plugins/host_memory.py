"""Host memory for CPU training. A training step frees and allocates the same multi-megabyte
tensors again and again. glibc's malloc gives big freed blocks back to the kernel (blocks over its
mmap threshold, and the top of its heap past the trim threshold), so each new tensor page-faults
and is zero-filled by the kernel before PyTorch writes it. With another job on the cores, that
made MEDIC's 25 per-layer importance and loss computations about 1.5x slower (docs/medic.md).
PyTorch's CPU performance guide suggests preloading jemalloc or tcmalloc for the same reason; this
does the part glibc itself allows."""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
LARGEST_HEAP_BLOCK = 32 << 20  # glibc refuses a higher mmap threshold on 64-bit machines
KEPT_FREE = 1 << 30


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MiB, and up to 1 GiB of free heap, for reuse in this process.
    Freed memory stays counted in the process's resident size. Returns False
    where the C library is not glibc (nothing is changed there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK)) and bool(
        mallopt(M_TRIM_THRESHOLD, KEPT_FREE)
    )
