"""Fixtures for gdn2_rag tests: a tiny corpus written to tmp_path (a contract, a help page, a code module)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rag_corpus import CODE_MODULE, CONTRACT, HELP_PAGE
from rag_fakes import FakeIndex

from gdn2_rag import RAG, RAGConfig


@pytest.fixture
def corpus(tmp_path: Path) -> dict[Path, str]:
    root = tmp_path / "corpus"
    root.mkdir()
    files = {
        root / "contract.txt": ("legal", CONTRACT),
        root / "help" / "password.md": ("support", HELP_PAGE),
        root / "src" / "retry.py": ("code", CODE_MODULE),
    }
    out = {}
    for path, (domain, text) in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        out[path] = domain
    return out


@pytest.fixture
def fake_index(corpus) -> FakeIndex:
    return FakeIndex.from_files(corpus)


@pytest.fixture
def fake_rag(tmp_path, fake_index) -> RAG:
    """A RAG over the fake index, answering retrieval-only (the reader turned off)."""
    cfg = RAGConfig(device="cpu", use_reader=False)
    rag = RAG(tmp_path / "idx", index=fake_index, config=cfg)
    return rag
