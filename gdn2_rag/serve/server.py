"""Open an index for serving and run the app under uvicorn."""

from __future__ import annotations

from pathlib import Path

from gdn2_rag.config import RAGConfig
from gdn2_rag.errors import RagError
from gdn2_rag.pipeline import RAG
from gdn2_rag.serve.reader import BatchedReaderRuntime
from gdn2_rag.serve.search import PrefetchingEmbedder
from gdn2_rag.serve.settings import ServeSettings


def open_for_serving(index_dir: str | Path, config: RAGConfig, settings: ServeSettings) -> RAG:
    """`RAG.open` with a micro-batched reader and a query embedder that searches can batch
    (`PrefetchingEmbedder`), warmed: the reader (by `config`'s policy) and the embedder load now, so a
    broken checkpoint stops the server at start and the first request is not slow.
    """
    from gdn2_ingest.errors import IngestError

    reader = BatchedReaderRuntime.from_config(config, settings.batch, settings.max_pass_tokens)
    embedder = None
    if config.dense_weight > 0:
        # the index's own query embedder (as recorded in its manifest), wrapped
        index = RAG.open(index_dir, config=config).index
        try:
            embedder = PrefetchingEmbedder(index.embedder)
        except IngestError as exc:
            raise RagError(str(exc)) from exc
        finally:
            index.close()
    rag = RAG(index_dir, config=config, reader=reader, embedder=embedder)
    rag.index  # noqa: B018 - opens the index now: a missing one is a start-up error (RagError)
    reader.load()
    rag._warm_embedder()
    return rag


def run(rag: RAG, settings: ServeSettings, access_log: bool = False) -> None:
    """Serve `rag` until interrupted (Ctrl-C or SIGTERM finish the requests in progress, then exit).

    Quiet by default: uvicorn's warnings and errors only; `access_log` adds a line per request.
    """
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
        log_level="info" if access_log else "warning",
        access_log=access_log,
        # a few seconds for requests in flight at shutdown; the reader's batches take well under that
        timeout_graceful_shutdown=10,
        # the server's own headers only
        server_header=False,
    )
