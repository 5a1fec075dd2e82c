"""Chunk labels that match where the text is (PDF pages and clauses) and code-parser fallbacks
that are logged and counted, never silent."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gdn2_ingest.chunking import chunk_document
from gdn2_ingest.chunking import code as code_mod
from gdn2_ingest.embed import SentenceTransformerEmbedder, TokenCounter
from gdn2_ingest.loaders import load_file
from gdn2_ingest.types import Document, IngestReport


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter(SentenceTransformerEmbedder().load_tokenizer())


def _contract_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(
        0, 6,
        "§ 1. Definitions\n\nIn this agreement the Supplier means Acme Ltd.\n\n§ 2. Payment\n\n"
        "Invoices are paid within 30 days of receipt.\n\n§ 3. Liability\n\n"
        "The Supplier's liability is limited to the fees paid in the last twelve months.",
    )  # fmt: skip
    pdf.add_page()
    pdf.multi_cell(
        0, 6,
        "Neither party excludes liability for death or personal injury caused by negligence.\n\n"
        "§ 4. Termination\n\nEither party may terminate on 90 days written notice.",
    )  # fmt: skip
    pdf.output(str(path))


@pytest.mark.parametrize("target", [200, 30])
def test_pdf_chunk_section_matches_its_page(tmp_path: Path, counter, target):
    p = tmp_path / "contract.pdf"
    _contract_pdf(p)
    doc = load_file(p, p.read_bytes())[0]
    _, chunks = chunk_document(doc, "legal", counter, target, 8, 256)
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        # every clause that starts in the chunk is named in its section
        for n, name in ((1, "Definitions"), (2, "Payment"), (3, "Liability"), (4, "Termination")):
            if f"§ {n}. {name}" in c.text:
                assert f"§ {n}. {name}" in c.section, (c.page, c.section, c.text)
    page2 = [c for c in chunks if c.page == 2]
    assert page2 and page2[0].text.startswith("Neither party excludes liability")
    # the clause running on from page 1 is the one in force, not page 1's first clause
    assert page2[0].section.split(" | ")[0] == "§ 3. Liability"
    assert all("§ 1. Definitions" not in c.section for c in page2)
    assert all(c.page == 1 for c in chunks if "Invoices" in c.text)


def test_code_parser_failure_is_logged_and_counted(counter, monkeypatch, caplog):
    class Broken:
        def parse(self, src):
            raise RuntimeError("grammar ABI mismatch")

    code_mod._parser.cache_clear()
    monkeypatch.setattr(code_mod, "_parser", lambda lang: (Broken(), ""))
    text = "def f(x):\n    return x + 1\n\n\ndef g(y):\n    return y * 2\n"
    doc = Document(path="/src/m.py", text=text, title="m.py", fmt="code", language="python")
    notes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="gdn2_ingest.chunking"):
        dom, chunks = chunk_document(doc, "auto", counter, 200, 32, 256, notes=notes)
    assert dom == "code" and chunks and "".join(c.text for c in chunks).split() == text.split()
    assert notes == ["python parser failed (RuntimeError: grammar ABI mismatch); chunked by lines"]
    assert "/src/m.py: python parser failed" in caplog.text
    # a missing grammar is a fallback too, with its own reason
    monkeypatch.setattr(code_mod, "_parser", lambda lang: (None, f"no {lang} grammar (LookupError: x)"))
    notes.clear()
    chunk_document(doc, "auto", counter, 200, 32, 256, notes=notes)
    assert notes == ["no python grammar (LookupError: x); chunked by lines"]
    # no language at all is the plan (plain line packing), not a fallback
    notes.clear()
    chunk_document(Document("/a/x", text, "x", "text"), "code", counter, 200, 32, 256, notes=notes)
    assert notes == []
    # the ingest report has a field the pipeline fills, and it is part of the JSON report
    assert IngestReport(index_dir="x").to_dict()["code_fallbacks"] == 0


def test_deeply_nested_code_falls_back_instead_of_crashing(counter):
    text = "x = " + "[" * 3000 + "]" * 3000 + "\n"
    doc = Document(path="/src/deep.py", text=text, title="deep.py", fmt="code", language="python")
    notes: list[str] = []
    _, chunks = chunk_document(doc, "auto", counter, 64, 8, 256, notes=notes)
    assert "".join(c.text for c in chunks) == text.strip()
