"""Every failure of the server as one JSON object, never a stack trace.

The body is OpenAI's error shape, so OpenAI clients show the message as they would OpenAI's own:

    {"error": {"message": "...", "type": "invalid_request_error", "code": "bad_json", "param": null}}

User errors are 4xx with a message that says what to change; anything unexpected is a 500 whose message
names the exception class only (the traceback goes to the server log).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gdn2_rag.batching import Overloaded
from gdn2_rag.errors import RagError

log = logging.getLogger("gdn2_rag.serve")
# seconds a refused client is told to wait (429 Retry-After)
RETRY_AFTER_S = 1

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict:
    return {
        "error": {"message": message, "type": TYPES.get(status, "server_error"), "code": code, "param": param}
    }


def error_response(
    status: int, message: str, code: str, param: str | None = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


def describe(exc: BaseException) -> tuple[int, str, str]:
    """(status, message, code) of an exception raised while answering."""
    if isinstance(exc, Overloaded):
        return 429, str(exc), "overloaded"
    if isinstance(exc, RagError):
        return 400, str(exc), "bad_request"
    log.error("internal error while answering", exc_info=exc)
    return 500, f"internal error ({type(exc).__name__}); see the server log", "internal_error"


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str, str | None]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the request body is not valid JSON", "bad_json", None
    first = errors[0] if errors else {}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid request")
    where = f"{param}: " if param else "request body: "
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return 422, f"{where}{msg}{more}", "invalid_field", param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if "json" not in request.headers.get("content-type", "") and request.method == "POST":
            given = request.headers.get("content-type") or "none"
            return error_response(
                415, f"send the body as JSON with Content-Type: application/json (got {given})", "not_json"
            )
        status, message, code, param = _validation_message(exc)
        return error_response(status, message, code, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            message = f"no route {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, f"http_{exc.status_code}", headers=exc.headers)

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return error_response(429, str(exc), "overloaded", headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(RagError)
    async def _rag(request: Request, exc: RagError) -> JSONResponse:
        return error_response(400, str(exc), "bad_request")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        status, message, code = describe(exc)
        return error_response(status, message, code)
