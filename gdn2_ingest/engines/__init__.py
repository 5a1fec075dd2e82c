"""Where an ingest's per-file work runs: in this process ("local") or on a Ray cluster ("ray").

The index writer (gdn2_ingest.pipeline) decides what to do: which files are new or changed, which
chunk texts already have a vector, chunk ids, hashes, the new generation and its atomic publish. An
engine only does the two parallel steps in between, and hands the results back in the writer's
order, so an index built on any engine is the one a local ingest builds:

  - `load_chunk(jobs)`: file bytes -> documents -> chunk drafts (one `FileChunks` per job, same order);
  - `embed(batches)`: lists of texts -> vectors, yielded as (batch number, array) when each is done.

    engine = open_engine(cfg, embedder, counter)
    try:
        chunks = engine.load_chunk([FileJob(path, data)], on_done=advance)
        for b, vecs in engine.embed([["text one", "text two"]]):
            ...
    finally:
        engine.close()
"""

from __future__ import annotations

from gdn2_ingest.engines.base import ENGINES, Engine, FileChunks, FileJob, load_and_chunk, open_engine

__all__ = ["ENGINES", "Engine", "FileChunks", "FileJob", "load_and_chunk", "open_engine"]
