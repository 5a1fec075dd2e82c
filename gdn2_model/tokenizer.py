"""The reader's byte-level BPE tokenizer (HF `tokenizers`), trained on the training corpus.

Byte-level so that any input (code, odd Unicode, binary-looking man pages) round-trips, with
character offsets for every token: the reader answers with character spans, never re-detokenised
text. The special tokens mark the query-first prompt layout (see `gdn2_model/prompt.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
QUESTION, CONTEXT, DOC, ANSWER, SEP = "<|question|>", "<|context|>", "<|doc|>", "<|answer|>", "<|sep|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, QUESTION, CONTEXT, DOC, ANSWER, SEP)
DEFAULT_VOCAB = 16384
TOKENIZER_FILE = "tokenizer.json"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB, min_frequency: int = 2
) -> Tokenizer:
    """Train a byte-level BPE with the prompt-layout special tokens at ids 0..len(SPECIAL_TOKENS)-1."""
    if not 256 + len(SPECIAL_TOKENS) < vocab_size <= 65536:
        raise ValueError(f"vocab_size must be in ({256 + len(SPECIAL_TOKENS)}, 65536], got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # keep offsets in the original string (no prefix-space shift)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_chunks(texts), trainer=trainer)
    return tok


def _chunks(texts: Iterable[str], size: int = 4096) -> Iterator[str]:
    # long documents in pieces so the trainer's per-sequence work stays bounded
    for t in texts:
        for i in range(0, len(t), size):
            yield t[i : i + size]


def save_tokenizer(tok: Tokenizer, directory: str | Path) -> Path:
    """Write `tokenizer.json` into `directory` (created if missing); returns the file path."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / TOKENIZER_FILE))
    return path / TOKENIZER_FILE


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer from a checkpoint folder or `tokenizer.json`; checks the special tokens are there."""
    p = Path(path)
    if p.is_dir():
        p = p / TOKENIZER_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no tokenizer at {p}")
    tok = Tokenizer.from_file(str(p))
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"tokenizer at {p} lacks special tokens {missing}")
    return tok


def special_id(tok: Tokenizer, token: str) -> int:
    """Id of one of SPECIAL_TOKENS."""
    i = tok.token_to_id(token)
    if i is None:
        raise ValueError(f"{token!r} is not a special token of this tokenizer")
    return i
