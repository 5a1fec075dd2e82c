"""Open an index for serving and run the app under uvicorn."""

from __future__ import annotations

from pathlib import Path

from gdn2_rag.config import RAGConfig
from gdn2_rag.errors import RagError
from gdn2_rag.pipeline import RAG
from gdn2_rag.serve.reader import BatchedReaderRuntime
from gdn2_rag.serve.settings import ServeSettings


def open_for_serving(index_dir: str | Path, config: RAGConfig, settings: ServeSettings) -> RAG:
    """`RAG.open` with a micro-batched reader, warmed: the reader (by `config`'s policy) and the query
    embedder load now, so a broken checkpoint stops the server at start and the first request is not slow.
    """
    reader = BatchedReaderRuntime.from_config(config, settings.batch, settings.max_pass_tokens)
    rag = RAG(index_dir, config=config, reader=reader)
    rag.index  # noqa: B018 - opens the index now: a missing one is a start-up error (RagError)
    reader.load()
    rag._warm_embedder()
    return rag


def run(rag: RAG, settings: ServeSettings, log_level: str = "info") -> None:
    """Serve `rag` until interrupted (Ctrl-C or SIGTERM finish the requests in progress, then exit)."""
    from gdn2_rag.serve.app import create_app

    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RagError(
            "`rag serve` needs the serve extra (uvicorn is missing): pip install 'gdn2-rag[serve]'"
        ) from exc

    uvicorn.run(
        create_app(rag, settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        # a few seconds for requests in flight at shutdown; the reader's batches take well under that
        timeout_graceful_shutdown=10,
        # the server's own headers only
        server_header=False,
    )
