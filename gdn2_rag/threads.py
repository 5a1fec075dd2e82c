"""How many CPU threads torch and FAISS get: the cores this process can really use, not the machine's.

torch defaults to one thread per physical core of the machine. In a container with a CPU quota, under a
restricted affinity mask, or on a machine other work keeps busy, those threads wait on each other at
every parallel region: one 16k-token CPU read on a busy 2-core machine took 496 s with torch's default
threads and 35 s with one. The choice here, `cpu_threads(None)`:

1. the CPUs in this process's affinity mask (`os.sched_getaffinity`), else `os.cpu_count()`;
2. capped by the cgroup CPU quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`);
3. less the cores other processes keep busy (1-minute load average), at least 1.

An explicit count (`RAGConfig.cpu_threads`, `rag --threads N`) wins over all three. The load average also
counts this process's own recent work: a long-running app that keeps the CPU busy itself should set the
count explicitly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (e.g. 1.5), or None when there is no quota."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota, period = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may run on: the affinity mask, capped by the cgroup quota (steps 1-2 above)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def cpu_threads(requested: int | None = None, root: Path = CGROUP_ROOT, load: float | None = None) -> int:
    """Threads for CPU model work: `requested` if given, else the available CPUs not kept busy by others."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"cpu_threads must be >= 1, got {requested}")
        return requested
    n = available_cpus(root)
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    # a core is busy when the load average says so; round so a light background load keeps all cores
    return max(1, min(n, round(n - load + 0.25)))


@contextmanager
def limited_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch and FAISS limited to `n` threads, then restore (None: no change).

    Process-wide settings: callers hold the index or reader lock, so only work in another thread of the
    same process can notice, and only while the block runs.
    """
    if n is None:
        yield
        return
    import torch

    try:
        import faiss
    except ImportError:
        # an index without FAISS (a custom or test index) still limits torch
        faiss = None
    before_torch = torch.get_num_threads()
    before_faiss = faiss.omp_get_max_threads() if faiss is not None else None
    torch.set_num_threads(n)
    if faiss is not None:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        if faiss is not None:
            faiss.omp_set_num_threads(before_faiss)
