"""The HTTP API over one `RAG`: /health, /info, /search, /ask (JSON or server-sent events).

    app = create_app(RAG.open("my-index", ...), ServeSettings())   # any ASGI server runs it; `rag serve`
                                                                   # runs it under uvicorn

Asks run in a bounded thread pool (`BoundedExecutor`: past `max_inflight` the answer is 429), so the
event loop never blocks on retrieval or the reader; a `BatchedReaderRuntime` gathers the reads of
concurrent asks into packed passes. Searches are micro-batched (`SearchBatcher`: one embedding call
for the queries of a batch; past its queue, 429). The index is the read-only view `RAG.open` holds (one
generation, see gdn2_ingest/index.py); nothing here writes to it. Routes and errors: README "Server".
"""

# no `from __future__ import annotations`: FastAPI reads the request models (local classes) from the
# routes' annotations at definition time
import asyncio
import dataclasses
import functools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gdn2_rag.errors import RagError

try:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise RagError(
        f"`rag serve` needs the serve extra ({exc.name} is missing): pip install 'gdn2-rag[serve]'"
    ) from exc

from gdn2_rag import __version__
from gdn2_rag.batching import BoundedExecutor
from gdn2_rag.pipeline import RAG, check_question
from gdn2_rag.serve import sse
from gdn2_rag.serve.errors import describe, error_body, install_error_handlers
from gdn2_rag.serve.guards import ApiKeyGuard, BodyLimit
from gdn2_rag.serve.models import request_models
from gdn2_rag.serve.openai_api import install_openai_routes
from gdn2_rag.serve.reader import BatchedReaderRuntime
from gdn2_rag.serve.search import SearchBatcher, SearchCall
from gdn2_rag.serve.settings import ServeSettings
from gdn2_rag.types import Answer


def answer_event(answer: Answer) -> dict:
    """The `answer` event of a streamed ask: the answer without its passages and citations (sent apart)."""
    data = answer.to_dict()
    keep = (
        "answer",
        "mode",
        "used_reader",
        "score",
        "generated",
        "evidence",
        "model",
        "reader_error",
        "abstained",
    )
    return {k: data[k] for k in keep}


def create_app(rag: RAG, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving `rag` (its reader is micro-batched when it is a BatchedReaderRuntime)."""
    settings = settings or ServeSettings()
    SearchRequest, AskRequest, ChatRequest = request_models(settings)
    pool = BoundedExecutor(settings.max_inflight)
    reader = rag.reader
    searches = SearchBatcher(rag, settings.search_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(reader, BatchedReaderRuntime):
            await reader.start()
        await searches.start()
        try:
            yield
        finally:
            await searches.stop()
            if isinstance(reader, BatchedReaderRuntime):
                await reader.stop()
            pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="gdn2-rag",
        version=__version__,
        lifespan=lifespan,
        summary="Cited answers from an index, read by a GDN-2 long-context reader.",
    )
    app.state.rag, app.state.settings, app.state.pool = rag, settings, pool
    install_error_handlers(app)
    # the last middleware added runs first: the key is checked before a byte of the body is read
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyGuard, api_key=settings.api_key)

    @app.get("/health")
    async def health() -> dict:
        """Liveness: the process answers (no key needed)."""
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict:
        """The index (as `rag info --json`), the reader in use and the server's limits and counters."""

        def collect() -> dict:
            return {"index": rag.index_identity(), "reader": {"policy": reader.policy, **reader.identity}}

        data = await asyncio.to_thread(collect)
        server = {
            "version": __version__,
            "max_body_bytes": settings.max_body_bytes,
            "max_question_chars": settings.max_question_chars,
            "max_inflight": settings.max_inflight,
            "inflight": pool.inflight,
            "batch": dataclasses.asdict(settings.batch),
        }
        if isinstance(reader, BatchedReaderRuntime):
            server["batches"] = dataclasses.asdict(reader.batcher.stats)
        server["search_batches"] = dataclasses.asdict(searches.batcher.stats)
        return {**data, "server": server}

    @app.post("/search")
    async def search(req: SearchRequest) -> JSONResponse:
        """The `k` best passages (hybrid retrieval), as `rag search --json`; concurrent searches are
        micro-batched (gdn2_rag/serve/search.py)."""
        t0 = time.perf_counter()
        passages = await searches.search(SearchCall(req.query, req.k, req.domain, req.path))
        # plain data already: a JSONResponse skips FastAPI's recursive re-encoding (a third of a search)
        return JSONResponse(
            {
                "schema_version": 1,
                "query": req.query,
                "passages": [p.to_dict() for p in passages],
                "timings": {"retrieve_s": round(time.perf_counter() - t0, 6)},
            }
        )

    @app.post("/ask", response_model=None)
    async def ask(req: AskRequest) -> JSONResponse | StreamingResponse:
        """A cited answer, as `rag ask --json`; with `"stream": true`, server-sent events: `passages`
        (as soon as the context is assembled), `answer`, `citations`, `done` (or one `error`)."""
        options = dict(
            context_tokens=req.context_tokens, top_k=req.top_k, domain=req.domain, path_glob=req.path
        )
        if not req.stream:
            answer = await rag.aask(req.question, executor=pool, **options)
            return JSONResponse(answer.to_dict())
        # a question that is no question is a 400 now, not an error event inside a 200 stream
        check_question(req.question)
        loop = asyncio.get_running_loop()
        passages: asyncio.Queue = asyncio.Queue()

        def on_passages(found) -> None:
            loop.call_soon_threadsafe(passages.put_nowait, found)

        # submitted here, not in the stream, so a full server answers 429 rather than a 200 stream
        job = loop.run_in_executor(
            pool, functools.partial(rag.ask, req.question, on_passages=on_passages, **options)
        )
        return StreamingResponse(_ask_events(job, passages), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)

    install_openai_routes(app, rag, settings, pool, ChatRequest)
    return app


async def _ask_events(job: asyncio.Future, passages: asyncio.Queue) -> AsyncIterator[bytes]:
    """passages -> answer -> citations -> done; an error event (never a traceback) if the ask fails."""
    first = asyncio.ensure_future(passages.get())
    sent = False
    try:
        await asyncio.wait({first, job}, return_when=asyncio.FIRST_COMPLETED)
        if first.done():
            yield sse.event("passages", {"passages": [p.to_dict() for p in first.result()]})
            sent = True
        try:
            answer = await job
        except Exception as exc:  # noqa: BLE001 - reported to the client as an event
            status, message, code = describe(exc)
            yield sse.event("error", {"status": status, **error_body(status, message, code)})
            return
        if not sent:
            yield sse.event("passages", {"passages": [p.to_dict() for p in answer.passages]})
        yield sse.event("answer", answer_event(answer))
        yield sse.event("citations", {"citations": [c.to_dict() for c in answer.citations]})
        data = answer.to_dict()
        yield sse.event("done", {"context": data["context"], "timings": data["timings"]})
    finally:
        first.cancel()
