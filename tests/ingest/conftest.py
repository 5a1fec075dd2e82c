"""Fixtures for ingest tests: a fake embedder config and small corpora written into tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ingest_corpus import CODE, LEGAL, SUPPORT  # noqa: E402
from ingest_fakes import HashEmbedder  # noqa: E402

from gdn2_ingest import IngestConfig  # noqa: E402


@pytest.fixture
def cfg() -> IngestConfig:
    emb = HashEmbedder()
    return IngestConfig(embedder_factory=lambda: emb, lock_timeout=5)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "legal").mkdir(parents=True)
    (root / "support").mkdir()
    (root / "code").mkdir()
    (root / "legal" / "msa.txt").write_text(LEGAL)
    (root / "support" / "faq.md").write_text(SUPPORT)
    (root / "code" / "tiny.py").write_text(CODE)
    return root


def pytest_addoption(parser):
    # read by tests/ingest/test_ingest_fuzz.py: "ci" (default, 300 inputs per loader) or "10k"
    parser.addoption(
        "--fuzz-profile",
        default="ci",
        choices=("ci", "10k"),
        help="hypothesis settings profile of the loader fuzz tests (tests/ingest/test_ingest_fuzz.py)",
    )
