"""Token ids of texts, each distinct text tokenised once per process (bounded by tokens held).

A served reader lays out ~100k tokens per question, and most of them are retrieved chunks that context
assembly has just counted with the same tokenizer (`ReaderLayout.count_many`), or that earlier questions
read already. Tokenising them again cost ~70 ms of CPU per 100k-token question (bench/results/serve.md);
a cache hit costs a hash of the text. Entries are keyed by a 128-bit BLAKE2b digest of the text, so the
cache holds no texts, and evicted least recently used once `max_tokens` tokens are held (12 bytes each:
int32 id and two int32 character offsets).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

# ~96 MB of ids and offsets: the chunks of ~80 distinct 100k-token contexts
DEFAULT_MAX_TOKENS = 8_000_000


@dataclass(frozen=True)
class TextTokens:
    """One text's tokens (no special tokens): ids [n] int32 and character offsets [n, 2] int32."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str]) -> list[TextTokens]:
    """Tokenise `texts` in one batch call (the Rust tokenizer spreads it over the cores), no cache."""
    if not texts:
        return []
    out = []
    for enc in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        ids = np.asarray(enc.ids, dtype=np.int32)
        out.append(TextTokens(ids, np.asarray(enc.offsets, dtype=np.int32).reshape(-1, 2)))
    return out


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TokenCache:
    """`encode_texts` with memory: thread-safe; texts missing from the cache are tokenised in one batch.

    Two threads missing the same text at once both tokenise it (same result); the lock only guards the map.
    """

    def __init__(self, tokenizer: Tokenizer, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.held_tokens = 0
        self.hits = 0
        self.misses = 0
        self._map: OrderedDict[bytes, TextTokens] = OrderedDict()
        self._lock = threading.Lock()

    def encode_many(self, texts: Sequence[str]) -> list[TextTokens]:
        """The tokens of each text, in order."""
        keys = [_key(t) for t in texts]
        out: list[TextTokens | None] = [None] * len(texts)
        with self._lock:
            for i, k in enumerate(keys):
                found = self._map.get(k)
                if found is not None:
                    self._map.move_to_end(k)
                    out[i] = found
        missing = [i for i, found in enumerate(out) if found is None]
        for i, tokens in zip(missing, encode_texts(self.tokenizer, [texts[i] for i in missing]), strict=True):
            out[i] = tokens
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
            for i in missing:
                self._put(keys[i], out[i])
        return out  # type: ignore[return-value]

    def _put(self, key: bytes, tokens: TextTokens) -> None:
        if key in self._map or len(tokens) > self.max_tokens:
            return
        self._map[key] = tokens
        self.held_tokens += len(tokens)
        while self.held_tokens > self.max_tokens:
            _, old = self._map.popitem(last=False)
            self.held_tokens -= len(old)
