"""The server's settings (one dataclass; `rag serve` flags fill it)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from gdn2_rag.batching import BatchSettings
from gdn2_rag.config import DEFAULT_CONTEXT_TOKENS


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost": addresses no other machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """Settings of `rag serve`.

    Args:
        host / port: where to listen. Loopback by default; any other address needs `api_key`.
        api_key: when set, every route but /health needs `Authorization: Bearer KEY` (what OpenAI
            clients send) or `X-API-Key: KEY`.
        max_body_bytes: larger request bodies are refused with 413 before they are read whole.
        max_question_chars: longest question or query accepted (422 beyond).
        max_context_tokens: largest `context_tokens` an /ask may ask for (422 beyond).
        max_inflight: asks worked on at once (retrieving, waiting for the reader or being read); one
            more is refused with 429 and Retry-After, so memory stays bounded under any load.
        batch: the reader's micro-batching (gdn2_rag.batching.BatchSettings).
        search_batch: the micro-batching of /search (their query embeddings in one call); its
            `max_queue` is the searches waiting before 429.
        max_pass_tokens: reader tokens in one packed pass (bounds the pass's activation memory).
        model_name: the model id the OpenAI-compatible routes report and /v1/models lists.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 64 * 1024
    max_question_chars: int = 4_000
    max_context_tokens: int = DEFAULT_CONTEXT_TOKENS
    max_inflight: int = 64
    batch: BatchSettings = field(default_factory=BatchSettings)
    search_batch: BatchSettings = field(
        default_factory=lambda: BatchSettings(max_batch=32, max_wait_ms=1.0, max_queue=128)
    )
    max_pass_tokens: int = 1_048_576
    model_name: str = "gdn2-rag"

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.api_key:
            raise ValueError(
                f"listening on {self.host} lets other machines in: give an API key (--api-key-file) "
                "or keep the default 127.0.0.1"
            )
        if self.api_key is not None and len(self.api_key) < 16:
            raise ValueError("the API key must be at least 16 characters")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        for name in ("max_body_bytes", "max_question_chars", "max_inflight", "max_pass_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
