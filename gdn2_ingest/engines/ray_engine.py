"""The Ray engine: Ray Data actor pools load, chunk and embed; the writer stays in this process.

Two datasets run one after the other, each row a pickled payload (paths may be non-UTF-8 bytes and
texts may hold anything a loader produced, which Arrow columns would not carry):

  1. one row per file -> a pool of `workers` chunking actors (each loads the embedder's tokenizer
     once) -> one pickled FileChunks per file, put back in the writer's order;
  2. one row per embedding batch, the same batches the local engine embeds -> a pool of embedding
     actors, each with its own embedder: on CPU one actor per CPU with torch pinned to one thread
     (n actors use n cores without fighting over them), on a cluster with GPUs one actor per GPU.

Between the two the writer drops chunk texts that already have a vector, so an incremental ingest
embeds on the cluster only what a local ingest would embed. A failed worker fails the ingest before
anything is published (the live generation is unchanged), as a failed local ingest does.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from gdn2_ingest.config import IngestConfig
from gdn2_ingest.engines.base import FileChunks, FileJob, load_and_chunk
from gdn2_ingest.errors import IngestError

# files per Ray Data block: small enough to spread a few hundred files over the workers
FILES_PER_BLOCK = 4


class EngineError(IngestError):
    """The Ray engine cannot start: Ray is not installed, the cluster is unreachable or too small."""


class _ChunkWorker:
    """Actor of step 1: the tokenizer is loaded once per actor, not once per file."""

    def __init__(self, cfg: IngestConfig, max_tokens: int) -> None:
        from gdn2_ingest.embed import TokenCounter, build_embedder

        emb = build_embedder(cfg.model_path, cfg.device, cfg.batch_size, cfg.embedder_factory, cfg.dtype)
        self.counter = TokenCounter(emb.load_tokenizer())
        self.cfg = cfg
        self.max_tokens = max_tokens

    def __call__(self, batch: dict) -> dict:
        out = [
            pickle.dumps(load_and_chunk(pickle.loads(job), self.cfg, self.counter, self.max_tokens))
            for job in batch["job"]
        ]
        return {"i": batch["i"], "out": out}


class _EmbedWorker:
    """Actor of step 2: one embedder per actor; `threads` torch threads (1 per CPU the actor holds)."""

    def __init__(self, cfg: IngestConfig, threads: int) -> None:
        import torch

        from gdn2_ingest.embed import build_embedder

        torch.set_num_threads(threads)
        self.embedder = build_embedder(
            cfg.model_path, cfg.device, cfg.batch_size, cfg.embedder_factory, cfg.dtype
        )

    def __call__(self, batch: dict) -> dict:
        out = []
        for texts in batch["texts"]:
            try:
                vecs = np.ascontiguousarray(self.embedder.embed(pickle.loads(texts)), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001 - sent back whole: Ray's wrappers lose its type
                vecs = _Failure(f"{type(exc).__name__}: {exc}")
            out.append(pickle.dumps(vecs))
        return {"b": batch["b"], "vecs": out}


@dataclass
class _Failure:
    """An embedder's exception in a worker, as the writer reports it."""

    message: str


class RayEngine:
    """Ray Data engine; connects (or starts a local Ray) on first use, and shuts down only a Ray it
    started itself."""

    name = "ray"

    def __init__(self, cfg: IngestConfig, max_tokens: int) -> None:
        self.cfg = cfg
        self.max_tokens = max_tokens
        self.workers = 0
        self.gpus = 0
        self._ray = None
        self._started = False

    def _connect(self):
        if self._ray is not None and self.workers:
            return self._ray
        try:
            import ray
            import ray.data
        except ImportError as exc:
            raise EngineError(f"--engine ray needs Ray Data: pip install 'gdn2-rag[ray]' ({exc})") from exc
        if not ray.is_initialized():
            local = {}
            if self.cfg.engine_address is None:
                # a Ray on this machine: as many CPUs as asked for, at least the machine's; workers at
                # the caller's priority (Ray's default niceness of 15 leaves them only idle cycles, so
                # on a busy machine 2 workers embedded no faster than 1: bench/results/scale.md)
                local["num_cpus"] = max(self.cfg.engine_workers or 0, os.cpu_count() or 1)
                local["_system_config"] = {"worker_niceness": 0}
            try:
                ray.init(
                    address=self.cfg.engine_address, include_dashboard=False, log_to_driver=False,
                    logging_level=logging.ERROR, **local,
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - any failure to join is reported as one line
                where = self.cfg.engine_address or "a local Ray"
                raise EngineError(f"cannot start the Ray engine on {where}: {exc}") from exc
            self._started = True
        # set before the checks below, so that close() shuts down a Ray started here even when they fail
        self._ray = ray
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        res = ray.cluster_resources()
        cpus = int(res.get("CPU", 0))
        self.gpus = int(res.get("GPU", 0)) if self.cfg.device != "cpu" else 0
        workers = self.cfg.engine_workers or max(1, cpus)
        if workers > cpus:
            raise EngineError(
                f"engine_workers={workers} but the Ray cluster has {cpus} CPUs; ask for at most {cpus}"
            )
        self.workers = workers
        return ray

    def load_chunk(self, jobs: list[FileJob], on_done: Callable[[int], None]) -> list[FileChunks]:
        if not jobs:
            return []
        ray = self._connect()
        rows = [{"i": i, "job": pickle.dumps(job)} for i, job in enumerate(jobs)]
        for job in jobs:
            job.data = b""
        blocks = max(1, -(-len(rows) // FILES_PER_BLOCK))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        del rows
        ds = ds.map_batches(
            _ChunkWorker, fn_constructor_args=(self.cfg, self.max_tokens), batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(self.workers, blocks)), num_cpus=1,
        )  # fmt: skip
        out: list[FileChunks | None] = [None] * len(jobs)
        for row in _rows(ds, "loading + chunking"):
            out[int(row["i"])] = pickle.loads(row["out"])
            on_done(1)
        missing = [jobs[i].path for i, r in enumerate(out) if r is None]
        if missing:
            raise RuntimeError(
                f"the Ray engine returned no result for {len(missing)} files, e.g. {missing[0]}"
            )
        return out  # type: ignore[return-value]

    def embed(self, batches: list[list[str]]) -> Iterator[tuple[int, np.ndarray]]:
        if not batches:
            return
        ray = self._connect()
        rows = [{"b": b, "texts": pickle.dumps(texts)} for b, texts in enumerate(batches)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        # one actor per GPU, else one per CPU; never more actors than batches
        if self.gpus:
            pool = {"compute": ray.data.ActorPoolStrategy(size=min(self.gpus, len(rows))), "num_gpus": 1}
        else:
            pool = {"compute": ray.data.ActorPoolStrategy(size=min(self.workers, len(rows))), "num_cpus": 1}
        ds = ds.map_batches(_EmbedWorker, fn_constructor_args=(self.cfg, 1), batch_size=1, **pool)
        for row in _rows(ds, "embedding"):
            vecs = pickle.loads(row["vecs"])
            if isinstance(vecs, _Failure):
                raise RuntimeError(f"Ray engine, embedding: {vecs.message}")
            yield int(row["b"]), vecs

    def close(self) -> None:
        if self._started and self._ray is not None:
            self._ray.shutdown()
        self._ray = None
        self._started = False


def _rows(ds, stage: str) -> Iterator[dict]:
    """The dataset's rows as they finish; a worker's failure becomes one RuntimeError naming the stage
    and the worker's own exception (not Ray's wrapper)."""
    try:
        yield from ds.iter_rows()
    except Exception as exc:  # noqa: BLE001 - Ray wraps worker errors in its own types
        cause = _root_cause(exc)
        raise RuntimeError(f"Ray engine, {stage}: {type(cause).__name__}: {cause}") from exc


def _root_cause(exc: BaseException) -> BaseException:
    """The worker's own exception under Ray's wrappers (RayTaskError.cause, UserCodeException's
    __cause__); Ray's own errors (a dead node, a lost object) are returned as they are."""
    seen = {id(exc)}
    while True:
        nxt = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt
