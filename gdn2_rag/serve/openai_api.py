"""OpenAI-compatible routes: /v1/chat/completions (plain and streamed) and /v1/models.

Existing clients and chat UIs talk to the index as to a chat model: the last user message is the
question; the reply's content is the answer followed by its numbered sources, and the same citations
come as structured data in an extra `citations` field (plus `rag`: mode, score, abstained). The rest of
the conversation and sampling options (temperature, max_tokens, ...) are ignored: the answer is
extracted from the documents, not sampled. `stream: true` sends OpenAI's `chat.completion.chunk`
events and `data: [DONE]`.
"""

# no `from __future__ import annotations`: FastAPI reads the request models (local classes) from the
# routes' annotations at definition time
import asyncio
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from gdn2_rag.errors import RagError
from gdn2_rag.pipeline import check_question
from gdn2_rag.serve import sse
from gdn2_rag.serve.errors import describe, error_body
from gdn2_rag.types import Answer


def answer_content(answer: Answer) -> str:
    """The assistant message: the answer, then `Sources:` with one numbered citation per line."""
    if not answer.passages:
        return "No passage in the index matched the question."
    if answer.abstained:
        return "No answer: the indexed documents do not seem to answer this question."
    if not answer.text:
        return f"No answer span was found in the {len(answer.passages)} passages read."
    text = " ".join(answer.text.split())
    if answer.citations:
        lines = [
            f"[{i}] {c.location}" + (f" § {c.section}" if c.section else "")
            for i, c in enumerate(answer.citations, start=1)
        ]
        text += "\n\nSources:\n" + "\n".join(lines)
    return text


def rag_fields(answer: Answer) -> dict:
    """The extra, non-OpenAI fields of a completion: structured citations and how the answer was made."""
    return {
        "citations": [c.to_dict() for c in answer.citations],
        "rag": {
            "mode": answer.mode,
            "used_reader": answer.used_reader,
            "score": answer.score,
            "abstained": answer.abstained,
            "reader_error": answer.reader_error,
            "passages": len(answer.passages),
        },
    }


def question_of(messages, max_chars: int) -> str:
    """The text of the last user message (content parts of type "text" joined)."""
    for message in reversed(messages):
        if message.role == "user":
            text = message.text().strip()
            if len(text) > max_chars:
                raise RagError(
                    f"the question is {len(text)} characters; this server takes at most {max_chars}"
                )
            return text
    raise RagError("the messages hold no user message to answer")


def install_openai_routes(app: FastAPI, rag, settings, pool, ChatRequest) -> None:
    model_name = settings.model_name

    @app.get("/v1/models")
    async def models() -> dict:
        """The one model this server answers with (clients list models before they chat)."""
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "gdn2-rag"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest) -> dict | StreamingResponse:
        question = question_of(req.messages, settings.max_question_chars)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model_name}
        if not req.stream:
            answer = await rag.aask(question, executor=pool)
            content = answer_content(answer)
            return {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                # prompt tokens: the reader tokens of the assembled context; nothing is generated
                "usage": {"prompt_tokens": answer.context_tokens, "completion_tokens": 0,
                          "total_tokens": answer.context_tokens},
                **rag_fields(answer),
            }  # fmt: skip
        check_question(question)
        loop = asyncio.get_running_loop()
        # submitted before the stream starts, so a full server answers 429, not a 200 stream
        job = loop.run_in_executor(pool, rag.ask, question)
        return StreamingResponse(_chunks(job, head), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)


def _chunk(head: dict, delta: dict, finish: str | None = None, **extra) -> bytes:
    body = {
        **head,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }
    return sse.event(None, body)


async def _chunks(job: asyncio.Future, head: dict) -> AsyncIterator[bytes]:
    """role chunk at once, the content when the answer is ready, a stop chunk with the citations, [DONE]."""
    yield _chunk(head, {"role": "assistant", "content": ""})
    try:
        answer = await job
    except Exception as exc:  # noqa: BLE001 - OpenAI streams report errors as a data line
        status, message, code = describe(exc)
        yield sse.event(None, error_body(status, message, code))
        yield sse.event(None, "[DONE]")
        return
    yield _chunk(head, {"content": answer_content(answer)})
    yield _chunk(head, {}, "stop", **rag_fields(answer))
    yield sse.event(None, "[DONE]")
