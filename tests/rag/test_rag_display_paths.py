"""Real indexes (ingest with the fast HashEmbedder) through the `rag` CLI: a non-UTF-8 file name is
shown in its display form ('caf\\xe9.txt') by ingest, search and ask, in text and JSON, while its
citations are still verified against the real file; man pages are cited by lines of groff's
rendering, verified against the indexed text."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gdn2_cli
import gdn2_ingest.pipeline as ingest_pipeline
from gdn2_ingest import IngestConfig, ingest_paths
from gdn2_rag import RAG
from gdn2_rag.schema import validator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))
from ingest_fakes import HashEmbedder  # noqa: E402

runner = CliRunner()
NAME = b"caf\xe9.txt"  # latin-1 'café.txt': not UTF-8
SHOWN = "caf\\xe9.txt"
TEXT = b"Refund policy\n\nRefunds are paid within fourteen days of the request.\n"

MAN_PAGE = r""".TH TOOLISH 1 "2024" "toolish 1.0"
.SH NAME
toolish \- count quokkas
.SH DESCRIPTION
.B toolish
counts the quokkas of a herd and prints
.I one
line per
.BR herd .
.SH OPTIONS
.TP
.B \-\-herd " SIZE"
Count quokkas in herds of
.IR SIZE .
"""


@pytest.fixture
def emb() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def cli(monkeypatch, emb):
    """`rag ...` in-process, its embedder (ingest's and the query one) the HashEmbedder."""
    monkeypatch.setattr(ingest_pipeline, "build_embedder", lambda *a, **k: emb)
    orig = RAG.open.__func__

    def fake_open(cls, index_dir, create=False, config=None, embedder=None):
        return orig(cls, index_dir, create, config, emb)

    monkeypatch.setattr(RAG, "open", classmethod(fake_open))

    def run(*args: str):
        return runner.invoke(gdn2_cli.app, list(args))

    return run


def _odd_file(folder: Path) -> str:
    """Write the non-UTF-8-named file; its path as Python holds it (surrogate-escaped str)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = os.path.join(os.fsencode(folder), NAME)
    with open(raw, "wb") as f:
        f.write(TEXT)
    return os.fsdecode(raw)


def test_non_utf8_name_in_search_and_ask(tmp_path: Path, cli, emb):
    path = _odd_file(tmp_path / "docs")
    assert "\udce9" in path
    rep = ingest_paths(tmp_path / "ix", [tmp_path / "docs"], IngestConfig(embedder_factory=lambda: emb),
                       progress=False)  # fmt: skip
    assert rep.files_new == 1 and not rep.skipped
    ix = str(tmp_path / "ix")

    out = cli("search", "refund fourteen days", "--index", ix)
    assert out.exit_code == 0, out.output
    assert SHOWN in out.output and "\ufffd" not in out.output

    out = cli("search", "refund fourteen days", "--json", "--index", ix)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert not list(validator("search").iter_errors(data))
    top = data["passages"][0]
    assert top["path"].endswith(SHOWN) and top["location"].startswith(top["path"] + ":")

    out = cli("ask", "When are refunds paid?", "--no-reader", "--index", ix)
    assert out.exit_code == 0, out.output
    assert f"{SHOWN}:3-3" in out.output and "fourteen days" in out.output

    out = cli("ask", "When are refunds paid?", "--no-reader", "--json", "--index", ix)
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert not list(validator("ask").iter_errors(data))
    (c,) = data["citations"]
    # verified by re-reading the real file (opened under its real, undecodable name)
    assert c["verified"] and c["verified_against"] == "file" and c["path"].endswith(SHOWN)
    assert c["location"].endswith(f"{SHOWN}:3-3")

    # the Python objects keep the real path (the file can be opened from them)
    rag = RAG.open(ix)
    answer = rag.ask("When are refunds paid?")
    assert answer.citations[0].path == path and Path(answer.citations[0].path).read_bytes() == TEXT
    assert answer.citations[0].location == f"{tmp_path / 'docs'}/{SHOWN}:3-3"
    assert answer.passages[0].path == path and answer.passages[0].to_dict()["path"].endswith(SHOWN)
    with rag.index as index:
        chunk = index.get_chunks([answer.passages[0].chunk_id])[0]
    assert chunk.path == path and chunk.citation == f"{tmp_path / 'docs'}/{SHOWN}:1-3"


def test_non_utf8_name_in_ingest_skip_lines_and_json(tmp_path: Path, cli):
    docs = tmp_path / "docs"
    _odd_file(docs)
    with open(os.path.join(os.fsencode(docs), b"blob\xff.txt"), "wb") as f:
        f.write(b"\x00\x01" * 50)  # skipped as binary
    out = cli("ingest", str(docs), "--index", str(tmp_path / "ix"))
    assert out.exit_code == 0, out.output
    assert "skipped" in out.stderr and "blob\\xff.txt: binary file" in out.stderr
    out = cli("ingest", str(docs), "--index", str(tmp_path / "ix2"), "--json")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)["report"]
    assert [Path(s["path"]).name for s in report["skipped"]] == ["blob\\xff.txt"]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_citations_are_verified_against_the_index(tmp_path: Path, cli, emb):
    page = tmp_path / "docs" / "man" / "man1" / "toolish.1"
    page.parent.mkdir(parents=True)
    page.write_text(MAN_PAGE)
    ingest_paths(
        tmp_path / "ix", [tmp_path / "docs"], IngestConfig(embedder_factory=lambda: emb), progress=False
    )
    out = cli(
        "ask", "What does toolish count and print?", "--no-reader", "--json", "--index", str(tmp_path / "ix")
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["answer"] and data["citations"], data
    for c in data["citations"]:
        # lines of the rendered text: verified against the indexed chunk text, never the roff source
        assert c["path"] == str(page) and c["verified"] and c["verified_against"] == "index"
        rendered = data["passages"][0]["text"]
        assert " ".join(c["quote"].split()) in " ".join(rendered.split())
