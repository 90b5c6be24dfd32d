"""Process-wide settings that make dreams fast on CPUs. The ``fastdream`` command applies them when it
starts; a program that uses the Python API may call :func:`configure_process` itself, early (before torch
is imported, for the OpenMP part). Importing fastdream changes nothing process-wide.

- ``OMP_WAIT_POLICY=PASSIVE`` (unless set): idle OpenMP threads sleep instead of spinning. torch and
  fastdream._C share one libgomp; with its default (spin for a while after every parallel region) the idle
  workers of one op steal the cores the next op needs, and a dream on a busy 2-core machine ran 10x slower
  (20 s against 1.5 s for the same 4 steps). libgomp reads it when it loads.
- glibc malloc keeps freed memory (``mallopt``: no ``mmap`` for large blocks, no trimming). By default
  every tensor over 32 MB is a fresh ``mmap`` and its pages fault in, zeroed by the kernel, on first touch;
  a dream allocates the same large activations at every step, so a backbone forward+backward pass to
  block9 at 1080p spent more time in the kernel than in torch: 520,000-930,000 page faults and 0.8-3.7 s
  of system time per pass (measured on an Intel Xeon, 2 cores). Kept in the heap, those pages are reused:
  no faults after the first step, and the bf16 pass fell from 1.0 s to 0.5 s. The cost: memory freed by a
  dream stays with the process (its peak does not change). ``FASTDREAM_MALLOC=system`` keeps glibc's
  defaults.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_done: dict[str, bool] = {}


GLIBC_MMAP_MAX, GLIBC_TRIM_THRESHOLD = 65536, 128 * 1024  # glibc's defaults


def keep_freed_memory(enabled: bool = True) -> bool:
    """Tell glibc malloc to keep freed memory for reuse (see the module doc), or with ``enabled=False`` to
    go back to glibc's defaults (the benchmarks measure both). False where it cannot (not glibc, or
    ``FASTDREAM_MALLOC=system``)."""
    if enabled and _done.get("malloc") is not None:
        return _done["malloc"]
    ok = False
    if os.environ.get("FASTDREAM_MALLOC", "").lower() != "system" and sys.platform.startswith("linux"):
        mmap_max, trim = (0, 2**31 - 1) if enabled else (GLIBC_MMAP_MAX, GLIBC_TRIM_THRESHOLD)  # C ints
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))
        except (OSError, AttributeError):
            ok = False
    _done["malloc"] = ok if enabled else None
    return ok


def configure_process() -> dict:
    """Apply fastdream's process-wide settings; returns what was applied."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {"omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "malloc_keeps_freed_memory": keep_freed_memory()}
