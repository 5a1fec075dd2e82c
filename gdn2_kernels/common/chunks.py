"""Chunk tables for packed (varlen) sequences: the tokens of each chunk, the chunks of each sequence.

Every Triton kernel here works on a flat token axis [sum of lengths, H, *]. A batch of B equal-length
sequences is just the packed case with offsets 0, T, 2T, ...; so one set of kernels serves both.

A model passes the same `cu_seqlens` tensor to every layer of one forward, so what is derived from it
(the offsets on the host, the chunk table on the device) is remembered per tensor (`per_tensor_memo`):
built once per forward, not once per layer, and without a host-device round trip per layer.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

R = TypeVar("R")

# tensors remembered per memoised function: one forward's cu_seqlens, with room for a few interleaved calls
MEMO_SIZE = 4


def per_tensor_memo(fn: Callable[..., R]) -> Callable[..., R]:
    """`fn(tensor, *args)` remembered for the last MEMO_SIZE tensors it was called with.

    A hit needs the same tensor object, not modified in place since (`_version`), and equal `args`. The
    memo keeps those few tensors alive (small offset tensors), so an id is never reused while remembered.
    """
    entries: list[tuple[torch.Tensor, int, tuple, R]] = []
    lock = threading.Lock()

    @functools.wraps(fn)
    def wrapper(t: torch.Tensor, *args) -> R:
        with lock:
            for ref, version, a, result in entries:
                if ref is t and version == t._version and a == args:
                    return result
        result = fn(t, *args)
        with lock:
            entries.insert(0, (t, t._version, args, result))
            del entries[MEMO_SIZE:]
        return result

    return wrapper


@per_tensor_memo
def seq_offsets(cu_seqlens: torch.Tensor) -> tuple[int, ...]:
    """The offsets of `cu_seqlens` on the host (one device-to-host copy per tensor)."""
    return tuple(int(x) for x in cu_seqlens.tolist())


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
    return _packed_table(cu_seqlens, C, torch.device(device))


@per_tensor_memo
def _packed_table(cu_seqlens: torch.Tensor, C: int, device: torch.device) -> ChunkTable:
    """The table of packed sequences, computed on the host in a few vector operations."""
    offs = np.asarray(seq_offsets(cu_seqlens), dtype=np.int64)
    lengths = offs[1:] - offs[:-1]
    chunks = -(-lengths // C)  # per sequence
    seq_chunks = np.concatenate([[0], np.cumsum(chunks)])
    # chunk j of sequence i starts at offs[i] + C * j
    index_in_seq = np.arange(seq_chunks[-1]) - np.repeat(seq_chunks[:-1], chunks)
    bos = np.repeat(offs[:-1], chunks) + C * index_in_seq
    lens = np.minimum(C, np.repeat(offs[1:], chunks) - bos)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.int32)).to(device, non_blocking=True)

    return ChunkTable(t(bos), t(lens), t(seq_chunks), int(seq_chunks[-1]), len(offs) - 1)
