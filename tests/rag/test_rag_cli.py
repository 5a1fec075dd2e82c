"""The `rag` commands through typer's CliRunner over the small in-memory index (RAG.open patched)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import gdn2_cli
from gdn2_rag import RAG
from gdn2_rag.schema import validator

runner = CliRunner()


@pytest.fixture
def patched(monkeypatch, fake_index):
    opened = {}

    def fake_open(cls, index_dir, create=False, config=None):
        opened["config"] = config
        return RAG(index_dir, index=fake_index, config=config)

    monkeypatch.setattr(RAG, "open", classmethod(fake_open))
    return opened


def test_ask_prints_answer_citations_and_evidence(patched):
    result = runner.invoke(gdn2_cli.app, ["ask", "When does the password reset link expire?", "--no-reader"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "retrieval-only answer: no reader was used" in out
    assert "Answer: The reset link expires after 45 minutes" in out
    assert "password.md:5-5" in out and "Evidence:" in out
    assert patched["config"].use_reader is False


def test_ask_json_is_one_object_matching_the_schema(patched):
    result = runner.invoke(
        gdn2_cli.app,
        ["ask", "Which laws govern this Agreement?", "--json", "--no-reader", "--top-k", "3", "-c", "2000"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert not list(validator("ask").iter_errors(data))
    assert "Delaware" in data["answer"] and data["mode"] == "retrieval-only"
    assert data["context"]["tokens"] <= 2000 and len(data["passages"]) <= 3


def test_verbose_prints_stage_timings(patched):
    result = runner.invoke(
        gdn2_cli.app, ["-v", "ask", "notice to terminate", "--no-reader", "--domain", "legal"]
    )
    assert result.exit_code == 0, result.output
    assert "timings: retrieve" in result.output and "assemble" in result.output and "read" in result.output


def test_search_text_and_json(patched):
    result = runner.invoke(gdn2_cli.app, ["search", "reset link", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "password.md:" in result.output and "bm25" in result.output
    result = runner.invoke(gdn2_cli.app, ["search", "reset link", "--json", "--path", "*.md"])
    data = json.loads(result.stdout)
    assert not list(validator("search").iter_errors(data))
    assert all(p["path"].endswith(".md") for p in data["passages"])


def test_search_reports_the_embedder_load_apart_from_retrieval(patched, monkeypatch):
    # the first search of a process loads the query embedder: that is not retrieval time
    monkeypatch.setattr(RAG, "_warm_embedder", lambda self: 3.0)
    result = runner.invoke(gdn2_cli.app, ["-v", "search", "reset link", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert not list(validator("search").iter_errors(data))
    assert data["timings"]["load_embedder_s"] == 3.0 and data["timings"]["retrieve_s"] < 3.0
    assert "loading the embedder before it: 3000.0 ms" in result.stderr


def test_nothing_matched_names_the_filters(patched):
    result = runner.invoke(gdn2_cli.app, ["search", "reset link", "--path", "nothing/*.md"])
    assert result.exit_code == 0 and "No passage matched (filters: --path 'nothing/*.md')." in result.stdout
    result = runner.invoke(
        gdn2_cli.app, ["ask", "reset link", "--no-reader", "--domain", "code", "--path", "*.md"]
    )
    assert result.exit_code == 0
    assert result.stdout.strip() == (
        "No passage in the index matched the question (filters: --domain code --path '*.md')."
    )


def test_info_prints_stats(patched):
    result = runner.invoke(gdn2_cli.app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["chunks"] > 0 and data["documents"] == 3


def test_bad_domain_and_contradictions_exit_2(patched):
    result = runner.invoke(gdn2_cli.app, ["ask", "q", "--domain", "finance", "--no-reader"])
    assert result.exit_code == 2 and "unknown domain" in result.output
    result = runner.invoke(gdn2_cli.app, ["ask", "q", "--no-reader", "--model", "."])
    assert result.exit_code == 2 and "contradict" in result.output
    result = runner.invoke(gdn2_cli.app, ["ask", "q", "--no-reader", "--generate"])
    assert result.exit_code == 2 and "--generate" in result.output


def test_empty_index_and_embedder_mismatch_exit_2(monkeypatch, tmp_path):
    from rag_fakes import FakeIndex

    from gdn2_ingest.errors import EmbedderMismatchError

    monkeypatch.setattr(
        RAG, "open", classmethod(lambda cls, d, create=False, config=None: RAG(d, index=FakeIndex([])))
    )
    result = runner.invoke(gdn2_cli.app, ["ask", "anything", "--no-reader"])
    assert result.exit_code == 2 and "is empty" in result.output

    def mismatch(cls, d, create=False, config=None):
        raise EmbedderMismatchError("index built with embedder A, asked for B; re-ingest with --rebuild")

    monkeypatch.setattr(RAG, "open", classmethod(mismatch))
    result = runner.invoke(gdn2_cli.app, ["search", "anything"])
    assert result.exit_code == 2 and "embedder A" in result.output
