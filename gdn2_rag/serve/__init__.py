"""`rag serve`: the HTTP API (FastAPI on uvicorn) over one index, with a micro-batched reader.

    from gdn2_rag.serve import ServeSettings, create_app, open_for_serving, run
    rag = open_for_serving("my-index", RAGConfig(), ServeSettings())
    run(rag, ServeSettings())

fastapi and uvicorn come with the `serve` extra (`pip install gdn2-rag[serve]`); importing this package
without them raises a RagError that says so.
"""

from __future__ import annotations

from gdn2_rag.errors import RagError

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise RagError(
        f"`rag serve` needs the serve extra ({exc.name} is missing): pip install 'gdn2-rag[serve]'"
    ) from exc

from gdn2_rag.serve.app import create_app
from gdn2_rag.serve.run import open_for_serving, run
from gdn2_rag.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "open_for_serving", "run"]
