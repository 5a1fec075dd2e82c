"""What crosses between ranks: a `GDN2Cache` (point to point) and per-token rows (gathered from slices).

A cache is sent as a small header (layer kinds, shapes, dtypes, tokens seen; pickled by
`send_object_list`) followed by its tensors in a fixed order, so the receiver needs no model knowledge to
rebuild it. For a GDN-2 layer that is the recurrent state [B, H, K, V] float32 and the three conv tails
[B, W-1, D]; a hybrid model's attention layers send their window (keys, values, valid flags).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

from gdn2_model.cache import AttentionLayerState, GDN2Cache, RecurrentLayerState

__all__ = ["gather_rows", "recv_cache", "send_cache", "slice_bounds"]


def slice_bounds(length: int, world: int) -> list[int]:
    """`world + 1` offsets cutting `length` positions into contiguous slices differing by at most one."""
    if world < 1:
        raise ValueError(f"world={world} must be at least 1")
    base, extra = divmod(length, world)
    bounds = [0]
    for r in range(world):
        bounds.append(bounds[-1] + base + (r < extra))
    return bounds


def _global(group: ProcessGroup | None, rank: int) -> int:
    return rank if group is None else dist.get_global_rank(group, rank)


@dataclass(frozen=True)
class _Spec:
    """The header of a sent cache: per layer its kind and the (shape, dtype) of each tensor sent."""

    seen_tokens: int
    layers: tuple[tuple[str, tuple[tuple[tuple[int, ...], str] | None, ...]], ...]


def _layer_tensors(layer) -> tuple[str, list[torch.Tensor | None]]:
    if layer is None:
        return "none", []
    if isinstance(layer, RecurrentLayerState):
        return "recurrent", [layer.recurrent_state, *(layer.conv_state or (None, None, None))]
    if isinstance(layer, AttentionLayerState):
        # NCCL moves no bool tensors: the valid flags travel as uint8
        return "attention", [layer.key, layer.value, layer.valid.to(torch.uint8)]
    raise TypeError(f"cannot send a cache layer of type {type(layer).__name__}")


def send_cache(cache: GDN2Cache, dst: int, group: ProcessGroup | None = None) -> None:
    """Send every layer's state to rank `dst` of `group` (blocking until it is received)."""
    tensors, layers = [], []
    for layer in cache.layers:
        kind, ts = _layer_tensors(layer)
        layers.append((kind, tuple(None if t is None else (tuple(t.shape), str(t.dtype)[6:]) for t in ts)))
        tensors += [t for t in ts if t is not None]
    spec = _Spec(cache.seen_tokens, tuple(layers))
    device = tensors[0].device if tensors else torch.device("cpu")
    dst = _global(group, dst)
    dist.send_object_list([spec], dst=dst, group=group, device=_object_device(device))
    for t in tensors:
        dist.send(t.contiguous(), dst=dst, group=group)


def recv_cache(src: int, device: torch.device, group: ProcessGroup | None = None) -> GDN2Cache:
    """Receive the cache that rank `src` of `group` sends with `send_cache`, on `device`."""
    box: list[_Spec | None] = [None]
    src = _global(group, src)
    dist.recv_object_list(box, src=src, group=group, device=_object_device(device))
    spec = box[0]
    assert isinstance(spec, _Spec), f"expected a cache header from rank {src}, got {type(spec).__name__}"
    cache = GDN2Cache(len(spec.layers))
    cache.seen_tokens = spec.seen_tokens
    for i, (kind, metas) in enumerate(spec.layers):
        ts = []
        for meta in metas:
            if meta is None:
                ts.append(None)
                continue
            shape, dtype = meta
            t = torch.empty(shape, dtype=getattr(torch, dtype), device=device)
            dist.recv(t, src=src, group=group)
            ts.append(t)
        if kind == "recurrent":
            conv = None if all(c is None for c in ts[1:]) else tuple(ts[1:])
            cache.layers[i] = RecurrentLayerState(recurrent_state=ts[0], conv_state=conv)
        elif kind == "attention":
            cache.layers[i] = AttentionLayerState(ts[0], ts[1], ts[2].bool())
    return cache


def _object_device(device: torch.device) -> torch.device | None:
    # objects travel as byte tensors: on the GPU under NCCL, on the CPU under gloo
    return device if device.type == "cuda" else None


def gather_rows(part: torch.Tensor, bounds: list[int], group: ProcessGroup | None = None) -> torch.Tensor:
    """Concatenate every rank's [B, n_r, ...] slice along dim 1 (rank order) on every rank.

    `bounds` are the slice offsets (`slice_bounds`); slices are padded to the longest for the collective.
    """
    world = len(bounds) - 1
    longest = max(bounds[r + 1] - bounds[r] for r in range(world))
    pad = longest - part.shape[1]
    if pad:
        part = torch.cat([part, part.new_zeros(part.shape[0], pad, *part.shape[2:])], dim=1)
    parts = [torch.empty_like(part) for _ in range(world)]
    dist.all_gather(parts, part.contiguous(), group=group)
    return torch.cat([p[:, : bounds[r + 1] - bounds[r]] for r, p in enumerate(parts)], dim=1)
