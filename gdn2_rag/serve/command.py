"""`rag serve`: settings from the CLI's flags, the index opened and warmed, uvicorn run."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from gdn2_rag.batching import BatchSettings
from gdn2_rag.errors import RagError

err = Console(stderr=True, highlight=False, soft_wrap=True)


def read_api_key(path: str | None) -> str | None:
    """The key in `path` (surrounding whitespace stripped); None without a path."""
    if path is None:
        return None
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"cannot read the API key file {path}: {exc}") from exc
    if not key:
        raise RagError(f"the API key file {path} is empty")
    return key


def serve_command(
    *,
    index: str,
    host: str,
    port: int,
    api_key_file: str | None,
    config,
    max_batch: int,
    batch_wait_ms: float,
    max_queue: int,
    max_inflight: int,
    max_body_bytes: int,
    access_log: bool = False,
) -> None:
    from gdn2_rag.serve.server import open_for_serving, run
    from gdn2_rag.serve.settings import ServeSettings

    try:
        settings = ServeSettings(
            host=host,
            port=port,
            api_key=read_api_key(api_key_file),
            max_inflight=max_inflight,
            max_body_bytes=max_body_bytes,
            batch=BatchSettings(max_batch=max_batch, max_wait_ms=batch_wait_ms, max_queue=max_queue),
        )
    except ValueError as exc:
        raise RagError(str(exc)) from exc
    rag = open_for_serving(index, config, settings)
    reader = rag.reader
    using = "the GDN-2 reader" if reader.available else f"retrieval only ({reader.reason})"
    err.print(
        f"serving {escape(str(Path(index).absolute()))} ({rag.info().chunks} chunks) on "
        f"http://{host}:{port}; answers from {escape(using)}"
        + ("; API key required" if settings.api_key else "")
    )
    run(rag, settings, access_log=access_log)
