"""Pieces shared by the operator's kernels (chunk tables for packed sequences)."""

from gdn2_kernels.common.chunks import ChunkTable, build_chunk_table

__all__ = ["ChunkTable", "build_chunk_table"]
