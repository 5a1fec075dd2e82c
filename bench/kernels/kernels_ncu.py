"""One forward of ours and of FLA at 1 x 102400 (H=16, K=V=128, bf16), for Nsight Compute to read.

Both run once first (compilation, FLA's autotuning); the measured calls sit between
cudaProfilerStart/Stop, so `ncu --profile-from-start off` sees one launch per kernel
(bench/kernels/kernels_diag.sh has the full command).
"""

from __future__ import annotations

import torch
from kernels_bench import fla_fwd, make_inputs, ours_fwd


def main() -> None:
    xs = make_inputs(1, 102400)
    try:
        import fla.ops.gdn2  # noqa: F401

        fns = [ours_fwd, fla_fwd]
    except ImportError:
        print("fla-core not importable: ours only")
        fns = [ours_fwd]
    with torch.inference_mode():
        for fn in fns:
            fn(xs)
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        for fn in fns:
            fn(xs)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


if __name__ == "__main__":
    main()
