"""Server-sent events framing (text/event-stream): `event:` and `data:` lines, a blank line between."""

from __future__ import annotations

import json

MEDIA_TYPE = "text/event-stream"
# no proxy buffering and no caching of a live stream
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(name: str | None, data) -> bytes:
    """One event; `data` is JSON-encoded unless it is a str (OpenAI's terminal `[DONE]`)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {name}\n" if name else ""
    lines = "".join(f"data: {line}\n" for line in payload.split("\n"))
    return f"{head}{lines}\n".encode()
