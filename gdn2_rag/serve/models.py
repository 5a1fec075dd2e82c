"""Request bodies of the server's routes (pydantic: FastAPI validates them into 422s with field names).

Unknown fields are refused on our own routes (a typo such as "top-k" must not pass silently) and
ignored on the OpenAI route (clients send temperature, max_tokens, ... that an extractive reader has
no use for). Length caps come from ServeSettings through `limits(...)`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gdn2_rag.serve.settings import ServeSettings


def request_models(settings: ServeSettings) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    """(SearchRequest, AskRequest, ChatRequest) with the settings' caps."""
    text = Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=settings.max_question_chars)
    ]
    budget = Field(default=None, ge=64, le=settings.max_context_tokens)

    class SearchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        query: text
        k: int = Field(default=10, ge=1, le=200)
        domain: Literal["legal", "support", "code"] | None = None
        path: str | None = Field(default=None, max_length=1000, description="glob over file paths")

    class AskRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        question: text
        context_tokens: int | None = budget
        top_k: int | None = Field(default=None, ge=1, le=2000)
        domain: Literal["legal", "support", "code"] | None = None
        path: str | None = Field(default=None, max_length=1000)
        stream: bool = False

    class TextPart(BaseModel):
        model_config = ConfigDict(extra="ignore")
        type: str
        text: str | None = None

    class ChatMessage(BaseModel):
        model_config = ConfigDict(extra="ignore")
        role: str
        content: str | list[TextPart] | None = None

        def text(self) -> str:
            if isinstance(self.content, list):
                return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
            return self.content or ""

    class ChatRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")
        model: str | None = None
        messages: list[ChatMessage] = Field(min_length=1, max_length=256)
        stream: bool = False

    return SearchRequest, AskRequest, ChatRequest
