"""`rag serve`: the HTTP API (FastAPI on uvicorn) over one index, with a micro-batched reader.

    from gdn2_rag.serve import ServeSettings, open_for_serving, run
    settings = ServeSettings()
    run(open_for_serving("my-index", RAGConfig(), settings), settings)

fastapi and uvicorn come with the `serve` extra (`pip install gdn2-rag[serve]`); the names below are
imported on first use, so `gdn2_rag.serve.reader` (the batched reader runtime) works without them, and
`create_app` without them raises a RagError that says what to install.
"""

from __future__ import annotations

__all__ = ["ServeSettings", "create_app", "open_for_serving", "run"]


def __getattr__(name: str):
    import importlib

    where = {"ServeSettings": "settings", "create_app": "app", "open_for_serving": "server", "run": "server"}
    if name not in where:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{where[name]}"), name)
