"""Rough edges found by hand (issue 23): each test failed before its fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gdn2_cli
from gdn2_ingest.loaders import load_file
from gdn2_ingest.scan import find_files
from gdn2_rag import RAG, RAGConfig, RagError


@pytest.mark.parametrize("question", ["?!", "  ...  ", "¿?"])
def test_a_question_without_words_is_a_user_error(fake_rag, question):
    with pytest.raises(RagError, match="no words"):
        fake_rag.ask(question)
    res = CliRunner().invoke(gdn2_cli.app, ["ask", question, "--index", "/nonexistent"])
    assert res.exit_code == 2 and "no words" in res.stderr


def test_ask_names_its_stages(tmp_path, fake_index):
    stages = []
    RAG(tmp_path, index=fake_index, config=RAGConfig(use_reader=False)).ask(
        "When does the reset link expire?", context_tokens=2000, on_stage=stages.append
    )
    assert stages[0] == "retrieving" and stages[-1] == "choosing the evidence"
    assert any(s.startswith("assembling up to 2000 tokens") for s in stages)


def test_search_rows_stay_one_line(tmp_path, fake_index, monkeypatch):
    chunk = fake_index.chunks[0]
    fake_index.chunks[0] = chunk = __import__("dataclasses").replace(
        chunk, section="Part one\nwith a newline\tand a tab"
    )

    def open_(cls, index, config=None, **kw):
        return RAG(tmp_path, index=fake_index, config=config)

    monkeypatch.setattr(RAG, "open", classmethod(open_))
    res = CliRunner().invoke(gdn2_cli.app, ["search", chunk.text.split()[0], "-k", "3"])
    assert res.exit_code == 0
    rows = [ln for ln in res.stdout.splitlines() if ln.strip()[:2].rstrip(".").isdigit()]
    assert rows and all("Part one with a newline and a tab" in r for r in rows if "Part one" in r)
    assert "with a newline" not in "\n".join(ln for ln in res.stdout.splitlines() if "Part one" not in ln)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("a.txt", "Se\xf1or caf\xe9 text, long enough to detect".encode("latin-1")),
        ("m.eml", b"Subject: Hi\n\nBody\n"),
    ],
)
def test_a_utf8_bom_never_reaches_the_text(name, body):
    (doc, *_) = load_file(Path("/tmp") / name, b"\xef\xbb\xbf" + body)
    assert "\ufeff" not in doc.text and "\xef\xbb\xbf".encode().decode("latin-1") not in doc.text
    assert not doc.text.startswith("ï»¿")


def test_unreadable_folder_is_listed(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.txt").write_text("x")
    (tmp_path / "b.txt").write_text("y")
    real_scandir = os.scandir

    # what a folder without read permission does (tests run as root, who can read every folder)
    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = find_files([tmp_path])
    assert found.unreadable == [(locked, "Permission denied")]
    assert found.files == [tmp_path / "b.txt"]
