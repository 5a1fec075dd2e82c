"""Registers, spills and shared memory of every GDN-2 kernel, as each tuning row launches it, compiled for
sm_80, sm_89 and sm_90 on a machine without a GPU; writes the table into bench/results/kernels.md
(between the "compile report" markers) and prints it.

    PYTHONPATH=. python bench/kernels/compile_report.py              # the installed Triton
    pip install --no-deps --target /tmp/t36 triton==3.6.0            # the GPU machine's Triton
    PYTHONPATH=/tmp/t36:. python bench/kernels/compile_report.py

Each distinct launch is compiled once per architecture (rows that launch a kernel alike share it), one
process per CPU core; the bucket column names the first bucket whose row launches it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import triton

from gdn2_kernels.gdn2.compile_targets import SPILL_BOUND, compile_table, spill_bound
from gdn2_kernels.gdn2.tuning import ARCHS

RESULTS = Path(__file__).resolve().parents[1] / "results" / "kernels.md"
BEGIN, END = "<!-- compile report: begin -->", "<!-- compile report: end -->"


def report() -> tuple[str, bool]:
    """The markdown table, and whether every launch fits its target within the spill bounds."""
    ok = True
    lines = [
        f"Triton {triton.__version__}, compiled on a CPU machine for each target; K = V = 128, H = 16. "
        "Shared memory per program against the target's per-block limit; spills are ptxas's spill stores + "
        "loads in bytes per thread (bounds: `SPILL_BOUND` in gdn2_kernels/gdn2/compile_targets.py).",
        "",
        "| arch | bucket | kernel | warps | stages | registers | spills (B) | shared (B) | limit (B) "
        "| fits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, bucket, launch, c in compile_table(ARCHS):
        good = c.fits and c.spill_bytes <= spill_bound(launch.name)
        ok &= good
        lines.append(
            f"| {arch} | {bucket} | {launch.name} | {launch.num_warps} | {launch.num_stages} | "
            f"{c.registers} | {c.spill_bytes} | {c.shared} | {c.shared_limit} | "
            f"{'yes' if good else '**no**'} |"
        )
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    table, ok = report()
    if not args.no_write:
        text = RESULTS.read_text()
        block = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text:
            head, rest = text.split(BEGIN, 1)
            text = head + block + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n## Compile report (every kernel, every target)\n\n" + block + "\n"
        RESULTS.write_text(text)
    print(f"spill bounds: {SPILL_BOUND}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
