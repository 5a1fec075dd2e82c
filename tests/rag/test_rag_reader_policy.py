"""Which answer a question gets: the reader's span, or the retrieved evidence, and never silently.

auto (default): the shipped reader only where its checkpoint's calibration says it beats retrieval;
--reader: a reader must load or the call fails; --no-reader: retrieval alone. A reader that should have
loaded and did not shows up as `reader_error` (JSON) and a warning line (text), never as a quiet fallback.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from test_rag_reader_mode import _tiny_checkpoint
from typer.testing import CliRunner

import gdn2_cli
import gdn2_rag.reading
from gdn2_rag import RAG, RAGConfig, RagError
from gdn2_rag.reading import read_calibration

QUESTION = "How much notice is needed to terminate?"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def _as_default(monkeypatch, tmp_path: Path, checkpoint: Path, calibration: dict | None) -> Path:
    """A copy of `checkpoint` standing in for the shipped default, with the given calibration.json."""
    default = tmp_path / "default"
    shutil.copytree(checkpoint, default)
    if calibration is not None:
        (default / "calibration.json").write_text(json.dumps(calibration))
    monkeypatch.setattr(gdn2_rag.reading, "default_checkpoint", lambda: default)
    return default


def test_uncalibrated_default_reader_is_not_used_and_says_why(tmp_path, fake_index, tiny, monkeypatch):
    _as_default(monkeypatch, tmp_path, tiny, calibration=None)
    answer = RAG(tmp_path, index=fake_index, config=RAGConfig(device="cpu")).ask(QUESTION, context_tokens=800)
    assert answer.mode == "retrieval-only" and answer.reader_error is None
    assert "not been shown to beat retrieval" in answer.model["reason"]
    assert answer.text and answer.citations


def test_calibrated_reader_that_loses_to_retrieval_stays_off(tmp_path, fake_index, tiny, monkeypatch):
    cal = {"threshold": 0.5, "beats_retrieval": False, "measured": "natural dev set, 0.11 vs 0.36"}
    _as_default(monkeypatch, tmp_path, tiny, cal)
    answer = RAG(tmp_path, index=fake_index, config=RAGConfig(device="cpu")).ask(QUESTION, context_tokens=800)
    assert answer.mode == "retrieval-only" and "0.11 vs 0.36" in answer.model["reason"]


def test_trusted_reader_under_its_threshold_falls_back_to_evidence(tmp_path, fake_index, tiny, monkeypatch):
    # random weights: every span's confidence is far below 0.999
    _as_default(monkeypatch, tmp_path, tiny, {"threshold": 0.999, "beats_retrieval": True})
    answer = RAG(tmp_path, index=fake_index, config=RAGConfig(device="cpu")).ask(QUESTION, context_tokens=800)
    assert answer.mode == "retrieval-only" and "under its calibrated threshold" in answer.model["reason"]
    assert answer.text and answer.citations
    # --reader asks for the reader's span, whatever its confidence
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(device="cpu", require_reader=True))
    assert rag.ask(QUESTION, context_tokens=800).mode == "reader"
    # threshold 0: the trusted reader answers
    _as_default(monkeypatch, tmp_path / "b", tiny, {"threshold": 0.0, "beats_retrieval": True})
    answer = RAG(tmp_path, index=fake_index, config=RAGConfig(device="cpu")).ask(QUESTION, context_tokens=800)
    assert answer.mode == "reader" and answer.reader_error is None


def _break_reader_import(monkeypatch):
    # what the `kernels` name collision did: the model package fails to import
    monkeypatch.setitem(sys.modules, "gdn2_model.readers", None)


def test_default_reader_failing_to_load_is_reported(tmp_path, fake_index, tiny, monkeypatch):
    _as_default(monkeypatch, tmp_path, tiny, {"threshold": 0.0, "beats_retrieval": True})
    _break_reader_import(monkeypatch)
    answer = RAG(tmp_path, index=fake_index, config=RAGConfig(device="cpu")).ask(QUESTION, context_tokens=800)
    assert answer.mode == "retrieval-only"
    assert answer.reader_error and "failed to load" in answer.reader_error
    assert answer.to_dict()["reader_error"] == answer.reader_error


def test_required_reader_failing_to_load_is_an_error(tmp_path, fake_index, tiny, monkeypatch):
    _as_default(monkeypatch, tmp_path, tiny, None)
    _break_reader_import(monkeypatch)
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(device="cpu", require_reader=True))
    with pytest.raises(RagError, match="cannot load the reader"):
        rag.ask(QUESTION, context_tokens=800)
    # and again on the next question: a required reader never falls back in silence
    with pytest.raises(RagError, match="cannot load the reader"):
        rag.ask(QUESTION, context_tokens=800)


@pytest.fixture
def cli_rag(monkeypatch, tmp_path, fake_index):
    """`rag ask` against the fake index, keeping the config the CLI built."""

    def open_(cls, index, config=None, **kw):
        return RAG(tmp_path, index=fake_index, config=config.with_(device="cpu"))

    monkeypatch.setattr(RAG, "open", classmethod(open_))


def test_cli_warns_on_stderr_and_json_carries_reader_error(tmp_path, tiny, monkeypatch, cli_rag):
    _as_default(monkeypatch, tmp_path, tiny, {"threshold": 0.0, "beats_retrieval": True})
    _break_reader_import(monkeypatch)
    runner = CliRunner()
    res = runner.invoke(gdn2_cli.app, ["ask", QUESTION, "-c", "800"])
    assert res.exit_code == 0
    assert "warning:" in res.stderr and "failed to load" in res.stderr
    res = runner.invoke(gdn2_cli.app, ["ask", QUESTION, "-c", "800", "--json"])
    assert res.exit_code == 0 and "failed to load" in json.loads(res.stdout)["reader_error"]
    res = runner.invoke(gdn2_cli.app, ["ask", QUESTION, "-c", "800", "--reader"])
    assert res.exit_code == 2 and "cannot load the reader" in res.stderr
    res = runner.invoke(gdn2_cli.app, ["ask", QUESTION, "-c", "800", "--no-reader", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["reader_error"] is None


def test_unreadable_calibration_counts_as_none(tmp_path):
    (tmp_path / "calibration.json").write_text("{not json")
    assert read_calibration(tmp_path) is None
    (tmp_path / "calibration.json").write_text('{"threshold": 0.3, "beats_retrieval": true}')
    assert read_calibration(tmp_path).threshold == 0.3
