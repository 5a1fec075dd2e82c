"""Chunk tables for packed (varlen) sequences: the tokens of each chunk, the chunks of each sequence.

Every Triton kernel here works on a flat token axis [sum of lengths, H, *]. A batch of B equal-length
sequences is just the packed case with offsets 0, T, 2T, ...; so one set of kernels serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChunkTable:
    """Device tables describing the chunking of N packed sequences.

    chunk_bos: [NC] int32 first token of each chunk; chunk_len: [NC] int32 tokens in it (1..C).
    seq_chunks: [N+1] int32 offsets of each sequence's chunks in the chunk axis.
    """

    chunk_bos: torch.Tensor
    chunk_len: torch.Tensor
    seq_chunks: torch.Tensor
    num_chunks: int
    num_seqs: int


def build_chunk_table(
    B: int, T: int, chunk_size: int, device: torch.device, cu_seqlens: torch.Tensor | None = None
) -> ChunkTable:
    """Tables for B sequences of length T, or for the packed sequences of `cu_seqlens` (then B == 1)."""
    C = chunk_size
    if cu_seqlens is None:
        nt = -(-T // C)
        starts = torch.arange(nt, device=device, dtype=torch.int32) * C
        chunk_bos = (
            torch.arange(B, device=device, dtype=torch.int32)[:, None] * T + starts[None, :]
        ).flatten()
        chunk_len = (T - starts).clamp(max=C).repeat(B)
        seq_chunks = torch.arange(B + 1, device=device, dtype=torch.int32) * nt
        return ChunkTable(chunk_bos, chunk_len, seq_chunks, B * nt, B)
    offs = [int(x) for x in cu_seqlens.tolist()]
    bos, lens, seq_chunks = [], [], [0]
    for s, e in zip(offs[:-1], offs[1:], strict=True):
        for c in range(s, e, C):
            bos.append(c)
            lens.append(min(C, e - c))
        seq_chunks.append(len(bos))

    def t(x: list[int]) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.int32).to(device, non_blocking=True)

    return ChunkTable(t(bos), t(lens), t(seq_chunks), len(bos), len(offs) - 1)
