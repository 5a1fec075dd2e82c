"""What every request passes before a route sees it: a body-size cap and the API key."""

from __future__ import annotations

import contextlib
import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gdn2_rag.serve.errors import error_body

# routes anyone may call without the key: a liveness probe reveals nothing
OPEN_PATHS = frozenset({"/health"})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: bodies over `max_bytes` get 413 before they are read whole.

    A declared Content-Length over the cap is refused at once; a chunked body is counted as it arrives
    and refused as soon as it passes the cap, so a client cannot make the server buffer more than that.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_json(send, 400, "the Content-Length header is not a number", "bad_length")
                return
            if size > self.max_bytes:
                await _send_json(send, 413, self._message(), "body_too_large")
                return
        seen = 0
        over = started = False

        async def counted_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                # the app turned the interrupted read into its own error (FastAPI: a 400): ours replaces it
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _send_json(send, 413, self._message(), "body_too_large")
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, counted_receive, guarded_send)
        if over and not started:
            await _send_json(send, 413, self._message(), "body_too_large")

    def _message(self) -> str:
        return f"the request body is over the server's limit of {self.max_bytes} bytes"


async def _send_json(send: Send, status: int, message: str, code: str, headers: list | None = None) -> None:
    body = json.dumps(error_body(status, message, code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ApiKeyGuard:
    """ASGI middleware: with a key set, every path but OPEN_PATHS needs it (401 JSON otherwise).

    The key is read from `Authorization: Bearer KEY` (OpenAI clients) or `X-API-Key: KEY`, and compared
    in constant time.
    """

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given, self.key):
            why = "missing" if given is None else "wrong"
            await _send_json(
                send,
                401,
                f"the API key is {why}: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                "invalid_api_key",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)
