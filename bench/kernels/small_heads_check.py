"""Head sizes K, V < 64 on the GPU (issue 22): forward error against float64 and the WY kernel's shared
memory, for launch-setting variants. One process per call, so memcheck can run each variant alone:

    python bench/kernels/small_heads_check.py 16 [--T 1500 --H 2 --B 1] [--set wy_precision=ieee ...]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "kernels"))
from gdn2_testutils import rand_inputs, rel_err  # noqa: E402

from gdn2_kernels.gdn2 import chunk as triton_chunk  # noqa: E402
from gdn2_kernels.gdn2.chunk_fwd import LAST_COMPILED  # noqa: E402
from gdn2_kernels.gdn2.reference import chunk_gdn2 as reference  # noqa: E402
from gdn2_kernels.gdn2.tuning import tuning_for  # noqa: E402


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("K", type=int)
    ap.add_argument("--V", type=int)
    ap.add_argument("--T", type=int, default=1500)
    ap.add_argument("--H", type=int, default=2)
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[])
    a = ap.parse_args()
    V = a.V or a.K
    xs = rand_inputs(a.B, a.T, a.H, a.K, V, dtype=torch.bfloat16, device="cuda", seed=a.K + a.T)
    chunks = a.B * -(-a.T // 64)
    t = tuning_for(torch.device("cuda"), a.B, chunks, a.H)
    t = replace(t, **{k: _value(v) for k, v in (s.split("=", 1) for s in a.set)})
    o, ht = triton_chunk.chunk_gdn2(*xs, output_final_state=True, tuning=t)
    torch.cuda.synchronize()
    o_ref, ht_ref = reference(*[x.double() for x in xs], output_final_state=True)
    wy = LAST_COMPILED["wy"]
    print(
        f"K={a.K} V={V} T={a.T} H={a.H} B={a.B} set={a.set} o_err={rel_err(o_ref, o):.2e} "
        f"ht_err={rel_err(ht_ref, ht):.2e} wy_shared={wy.metadata.shared} wy_warps={wy.metadata.num_warps}"
    )


if __name__ == "__main__":
    main()
