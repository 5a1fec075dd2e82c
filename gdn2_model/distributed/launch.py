"""Start a group of worker processes on this host, one per GPU (or N on the CPU), and collect their results.

`torchrun` is the launcher for long jobs (`train_ddp.py`); this is for code that must compare world sizes
inside one program (the multi-GPU benchmark, the 2-process tests): `run_workers(fn, 2)` spawns two fresh
processes, joins them into a process group through a file in a temporary folder (no port to collide on),
calls `fn(worker, *args)` in each and returns every rank's return value, rank order.
"""

from __future__ import annotations

import io
import os
import queue
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["Worker", "run_workers"]


@dataclass(frozen=True)
class Worker:
    """What a worker knows about itself: its rank, the group's size and the device it computes on."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _entry(
    rank: int,
    world: int,
    backend: str,
    init_file: str,
    device_type: str,
    threads: int,
    fn: Callable[..., Any],
    args: tuple,
    results: Any,
) -> None:
    if device_type == "cuda":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        torch.set_num_threads(threads)
        device = torch.device("cpu")
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        out = fn(Worker(rank, world, device), *args)
        # as bytes: a tensor put on a torch queue is shared by a handle that dies with this process
        buf = io.BytesIO()
        torch.save(out, buf)
        results.put((rank, buf.getvalue(), None))
    except BaseException:
        results.put((rank, None, traceback.format_exc()))
        raise
    finally:
        dist.destroy_process_group()


def run_workers(
    fn: Callable[..., Any],
    world: int,
    *args: Any,
    device_type: str = "cpu",
    backend: str | None = None,
    timeout_s: float = 600.0,
) -> list[Any]:
    """Run `fn(Worker, *args)` in `world` new processes in one process group; their results, by rank.

    Args:
        fn: a module-level function (the processes are spawned, so it is pickled by name); it returns
            something picklable (move tensors to the CPU first).
        world: processes to start.
        device_type: "cuda" gives rank r the GPU r; "cpu" shares the cores (threads split evenly).
        backend: "nccl" on CUDA, "gloo" on CPU by default.
        timeout_s: give up (and stop the workers) after this long.

    Raises:
        ValueError: bad world size or more CUDA ranks than GPUs.
        RuntimeError: a worker failed (its traceback is in the message) or the timeout passed.
    """
    if world < 1:
        raise ValueError(f"world={world} must be at least 1")
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device_type={device_type!r} must be 'cpu' or 'cuda'")
    if device_type == "cuda" and world > torch.cuda.device_count():
        raise ValueError(f"world={world} CUDA ranks need {world} GPUs, found {torch.cuda.device_count()}")
    backend = backend or ("nccl" if device_type == "cuda" else "gloo")
    threads = max(1, (os.cpu_count() or 1) // world)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="gdn2-dist-") as tmp:
        init_file = str(Path(tmp) / "rendezvous")
        procs = mp.start_processes(
            _entry,
            args=(world, backend, init_file, device_type, threads, fn, args, results),
            nprocs=world,
            join=False,
            start_method="spawn",
        )
        out: dict[int, Any] = {}
        errors: list[str] = []
        deadline = time.monotonic() + timeout_s
        try:
            while len(out) + len(errors) < world:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers did not finish within {timeout_s:.0f} s")
                try:
                    rank, value, err = results.get(timeout=0.2)
                except queue.Empty:
                    # a worker that died without reporting (killed, segfault) ends the wait here
                    if any(p.exitcode not in (None, 0) for p in procs.processes):
                        break
                    continue
                if err is not None:
                    # the other ranks may be waiting on this one in a collective: stop them all now
                    errors.append(f"rank {rank}:\n{err}")
                    break
                out[rank] = torch.load(io.BytesIO(value), weights_only=False)
            if errors:
                raise RuntimeError("a worker failed\n" + "\n".join(errors))
            procs.join(timeout=timeout_s)
        finally:
            for p in procs.processes:
                if p.is_alive():
                    p.terminate()
                p.join(timeout=10)
        missing = [r for r in range(world) if r not in out]
        if missing:
            codes = [p.exitcode for p in procs.processes]
            raise RuntimeError(f"workers {missing} exited without a result (exit codes {codes})")
    return [out[r] for r in range(world)]
