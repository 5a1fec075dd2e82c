"""The reader's shapes through the model and the operator, for compute-sanitizer (issue 22).

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck \\
        python3 bench/kernels/small_heads_memcheck.py

With caching off every tensor is its own allocation, so an access past a tensor's end is reported instead of
landing, unnoticed, in the rest of a caching-allocator segment (where it faults only when that segment ends
next to unmapped memory: the order-dependent failure of the GPU suite). Shapes: hidden 32, 2 heads
of K = V = 16, 1500 tokens (the RAG reader test's tiny checkpoint), then the operator alone at
K = V = 16, 32, 64.
"""

from __future__ import annotations

import torch

from gdn2_kernels import gdn2, gdn2_step
from gdn2_model import GDN2Config, GDN2Model


def model_case() -> None:
    cfg = GDN2Config(
        vocab_size=300, hidden_size=32, num_hidden_layers=1, num_heads=2, head_dim=16, intermediate_size=48,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    model = GDN2Model(cfg).eval().to("cuda", torch.bfloat16)
    ids = torch.randint(0, 300, (1, 1500), device="cuda")
    with torch.inference_mode():
        out = model(ids, use_cache=True)
        model(ids[:, :1], past_key_values=out.past_key_values, use_cache=True)
    torch.cuda.synchronize()
    print("model (K = V = 16, 1500 tokens, then one decode step): ok", flush=True)


def operator_case(K: int) -> None:
    B, T, H = 1, 1500, 2
    q, k, v = (torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    g = -torch.rand(B, T, H, K, device="cuda")
    b, w = (torch.rand(B, T, H, K, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    xs = [x.requires_grad_() for x in (q, k, v, g, b, w)]
    o, ht = gdn2(*xs, output_final_state=True)
    (o.float().sum() + ht.sum()).backward()
    with torch.no_grad():
        gdn2_step(*(x[:, :1].detach() for x in xs), ht.detach().clone())
    torch.cuda.synchronize()
    print(f"operator K = V = {K}: forward, backward, step ok", flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    model_case()
    for K in (16, 32, 64):
        operator_case(K)
