"""Timeline of one forward of a single long sequence: when each launch of the overlapped schedule starts and
ends on its stream (CUDA events around every launch), segment by segment.

It answers what the forward's wall time is made of: whether each segment's state pass (side stream) ends
before the next segment's scores and WY (main stream) do, i.e. whether the schedule is bound by the card's
resources or by the state pass's chain, and how long a state step takes per chunk while it overlaps and
while it runs alone (the last segment). Run beside the same forward in one segment for the kernels alone.

    cd bench && PYTHONPATH=.. python3 kernels_timeline.py [1x65536,1x102400]

An event's time is when its stream reaches it: a state pass "starts" when the side stream may run it, which
can be before its programs find room on the SMs.
"""

from __future__ import annotations

import sys

import torch
from kernels_bench import make_inputs, ours_fwd, tuned

from gdn2_kernels.gdn2 import chunk_fwd as cf


class EventLog:
    """(name, start event, end event) of each launch since the last `clear`, on the current stream."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    def clear(self) -> None:
        self.rows = []

    def around(self, name: str, launch):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = launch()
        end.record()
        self.rows.append((name, start, end))
        return result


class TimedKernel:
    """Stands in for a Triton kernel of chunk_fwd that is launched as `kernel[grid](...)`."""

    def __init__(self, name: str, kernel, log: EventLog) -> None:
        self.name, self.kernel, self.log = name, kernel, log

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.log.around(self.name, lambda: self.kernel[grid](*args, **kwargs))


def instrument(log: EventLog) -> dict:
    """Wrap the three forward kernels as chunk_fwd launches them (timing probes, not settings); returns the
    originals."""
    names = {
        "gdn2_fwd_kernel_scores": "scores",
        "gdn2_fwd_kernel_wy": "wy",
        "gdn2_fwd_kernel_state_o": "state",
    }
    saved = {attr: getattr(cf, attr) for attr in names}
    for attr, name in names.items():
        setattr(cf, attr, TimedKernel(name, saved[attr], log))
    return saved


def one_forward(xs, log: EventLog, segments: int) -> tuple[float, list[tuple[str, float, float]]]:
    """Wall time (ms) of one forward and (name, start, end) of each launch in ms from its start."""
    t = tuned(xs, segments=segments)
    with torch.no_grad():
        for _ in range(3):  # compile, then warm
            ours_fwd(xs, t)
        torch.cuda.synchronize()
        log.clear()
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0.record()
        ours_fwd(xs, t)
        t1.record()
        torch.cuda.synchronize()
    rows = [(name, t0.elapsed_time(a), t0.elapsed_time(b)) for name, a, b in log.rows]
    return t0.elapsed_time(t1), rows


def report(T: int, segments: int, shrink: float, wall: float, rows) -> None:
    num_chunks = T // 64
    cuts = cf.segment_bounds(num_chunks, segments, shrink) if segments > 1 else [0, num_chunks]
    print(f"\n1 x {T}, {segments} segment(s): {wall:.3f} ms")
    print("| seg | chunks | scores | wy | state | state µs / chunk |")
    print("|---|---|---|---|---|---|")
    by_name: dict[str, list[tuple[float, float]]] = {}
    for name, a, b in rows:
        by_name.setdefault(name, []).append((a, b))
    for s in range(len(cuts) - 1):
        n = cuts[s + 1] - cuts[s]
        cells = []
        for name in ("scores", "wy", "state"):
            a, b = by_name[name][s]
            cells.append(f"{a:.3f}-{b:.3f} ({b - a:.3f})")
        st_a, st_b = by_name["state"][s]
        print(f"| {s} | {n} | " + " | ".join(cells) + f" | {(st_b - st_a) / n * 1e3:.2f} |")
    for name in ("scores", "wy", "state"):
        total = sum(b - a for a, b in by_name[name])
        print(f"{name}: {total:.3f} ms summed over segments")


def main() -> None:
    sizes = [(1, 65536), (1, 102400)]
    if len(sys.argv) > 1:
        sizes = [tuple(int(x) for x in bt.split("x")) for bt in sys.argv[1].split(",")]
    print(torch.cuda.get_device_name())
    log = EventLog()
    saved = instrument(log)
    try:
        for B, T in sizes:
            xs = make_inputs(B, T)
            row = tuned(xs)
            for segments in (1, row.segments):
                wall, rows = one_forward(xs, log, segments)
                report(T, segments, row.segment_shrink, wall, rows)
    finally:
        for name, value in saved.items():
            setattr(cf, name, value)


if __name__ == "__main__":
    main()
