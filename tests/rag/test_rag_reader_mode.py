"""Reader mode with a tiny random GDN-2 checkpoint: whatever span the reader picks, it is cited truthfully.

The weights are random, so the span is arbitrary; that is the point. The pipeline must map any
span the reader returns to file lines that really hold it, and report the reader's identity.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from rag_corpus import CODE_MODULE, CONTRACT, HELP_PAGE

from gdn2_rag import RAG, RAGConfig
from gdn2_rag.citations import FileLines, verify


def _tiny_checkpoint(path: Path, lm_head: bool = False) -> Path:
    from gdn2_model import GDN2Config, GDN2ForReader
    from gdn2_model.tokenizer import save_tokenizer, train_tokenizer

    tok = train_tokenizer([CONTRACT, HELP_PAGE, CODE_MODULE] * 3, vocab_size=300, min_frequency=1)
    cfg = GDN2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_heads=2,
        head_dim=16,
        intermediate_size=48,
        bos_token_id=None,
        eos_token_id=None,
        reader_lm_head=lm_head,
    )
    GDN2ForReader(cfg).save_pretrained(str(path))
    save_tokenizer(tok, path)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("tiny-reader"))


def test_generate_needs_an_lm_head_and_then_writes_text(tmp_path, fake_index, tiny_checkpoint):
    from gdn2_rag import RagError

    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cpu"))
    with pytest.raises(RagError, match="LM head"):
        rag.ask("When does the reset link expire?", context_tokens=600, generate=True)
    with_head = _tiny_checkpoint(tmp_path / "lm", lm_head=True)
    cfg = RAGConfig(model_path=str(with_head), device="cpu", max_new_tokens=4)
    lm_rag = RAG(tmp_path, index=fake_index, config=cfg)
    answer = lm_rag.ask("When does the reset link expire?", context_tokens=600, generate=True)
    assert answer.mode == "reader" and isinstance(answer.generated, str)
    # the extractive answer and its citations are there as well
    assert answer.text and all(c.verified for c in answer.citations)
    assert answer.to_dict()["generated"] == answer.generated


def test_reader_span_is_cited_at_lines_that_hold_it(tmp_path, fake_index, tiny_checkpoint):
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cpu"))
    answer = rag.ask("How much notice is needed to terminate?", context_tokens=1500)
    assert answer.mode == "reader" and answer.used_reader
    assert answer.model["path"] == str(tiny_checkpoint) and answer.model["device"] == "cpu"
    assert answer.token_counter == "reader-tokenizer" and answer.context_tokens <= 1500
    assert answer.text
    files = FileLines()
    for c in answer.citations:
        assert c.verified and verify(c.path, c.line_start, c.line_end, c.quote, files)
    # the citations together quote exactly the answer span
    assert " ".join("".join(c.quote for c in answer.citations).split()) == " ".join(answer.text.split())


def test_reader_load_is_quiet_and_restores_transformers_settings(
    tmp_path, fake_index, tiny_checkpoint, capfd
):
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cpu"))
    capfd.readouterr()
    assert rag.reader.available
    # no "Loading weights" progress bar from from_pretrained
    assert capfd.readouterr().err == ""
    # the app's own transformers settings are as they were
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == (verbosity, bar)


def test_reader_is_loaded_once_and_shared_by_threads(tmp_path, fake_index, tiny_checkpoint):
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cpu"))
    answers, errors = [], []

    def ask():
        try:
            answers.append(rag.ask("When does the reset link expire?", context_tokens=1000))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(answers) == 3
    assert len({a.text for a in answers}) == 1  # same input, same reader, same span
    assert rag.reader._reader is not None and rag.reader.load_seconds >= 0


def test_llamaindex_llm_uses_the_reader(tmp_path, fake_index, tiny_checkpoint):
    from gdn2_rag.llamaindex import READER_QA_TEMPLATE, GDN2ReaderLLM

    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cpu"))
    llm = GDN2ReaderLLM(rag)
    context = "The reset link expires after 45 minutes.\n\nLate payments carry interest."
    response = llm.complete(READER_QA_TEMPLATE.format(query_str="When does it expire?", context_str=context))
    assert response.additional_kwargs["mode"] == "reader"
    # an extractive reader answers with text of the context, whatever its weights
    assert response.text and response.text in context
    assert llm.metadata.model_name == f"gdn2-reader:{tiny_checkpoint.name}"


@pytest.mark.gpu
def test_reader_on_cuda_cites_truthfully(tmp_path, fake_index, tiny_checkpoint):
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cuda"))
    answer = rag.ask("How much notice is needed to terminate?", context_tokens=1500)
    assert answer.mode == "reader" and answer.model["device"] == "cuda"
    assert answer.text
    files = FileLines()
    assert all(
        c.verified and verify(c.path, c.line_start, c.line_end, c.quote, files) for c in answer.citations
    )


def test_default_budget_is_100k_but_4k_for_a_reader_on_cpu(tmp_path, fake_index, tiny_checkpoint):
    on_cpu = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cpu"))
    assert on_cpu.ask("How much notice is needed to terminate?").context_budget == 4_000
    no_reader = RAG(tmp_path, index=fake_index, config=RAGConfig(use_reader=False))
    answer = no_reader.ask("How much notice is needed to terminate?")
    assert answer.context_budget == 100_000 and answer.to_dict()["context"]["budget"] == 100_000
    # an explicit budget always wins
    assert on_cpu.ask("How much notice is needed to terminate?", context_tokens=500).context_budget == 500


def test_cli_answer_shows_the_reader_confidence(tmp_path, fake_index, tiny_checkpoint, capsys):
    from gdn2_rag.api import print_answer

    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cpu"))
    answer = rag.ask("How much notice is needed to terminate?", context_tokens=1500)
    print_answer(answer)
    assert f"(reader confidence {answer.score:.2f})" in capsys.readouterr().out
    print_answer(RAG(tmp_path, index=fake_index, config=RAGConfig(use_reader=False)).ask("notice?"))
    assert "confidence" not in capsys.readouterr().out


def _recording_reader_inputs(monkeypatch) -> list:
    """(pieces, ReaderInput) of every prompt the reader lays out, for the tests below."""
    import gdn2_model.reader as reader_module

    seen = []
    build = reader_module.build_reader_input

    def record(tokenizer, question, pieces, **kw):
        ri = build(tokenizer, question, pieces, **kw)
        seen.append((list(pieces), ri))
        return ri

    monkeypatch.setattr(reader_module, "build_reader_input", record)
    return seen


@pytest.mark.parametrize("repeat", [False, True])
def test_the_reader_reads_what_the_budget_counted(tmp_path, fake_index, tiny_checkpoint, monkeypatch, repeat):
    from gdn2_model.tokenizer import QUESTION, load_tokenizer

    seen = _recording_reader_inputs(monkeypatch)
    cfg = RAGConfig(model_path=str(tiny_checkpoint), device="cpu", repeat_question=repeat)
    rag = RAG(tmp_path, index=fake_index, config=cfg)
    answer = rag.ask("How much notice is needed to terminate?", context_tokens=400)
    assert answer.mode == "reader" and len(seen) == 1
    pieces, ri = seen[0]
    # exact: the reader's input is as long as the context the budget counted, every piece included
    assert len(ri) == answer.context_tokens <= 400 and ri.pieces_used == len(pieces) == answer.context_pieces
    # "read twice" reaches the reader: the question is laid out again after the context
    question_marker = load_tokenizer(tiny_checkpoint).token_to_id(QUESTION)
    assert int((ri.input_ids == question_marker).sum()) == (2 if repeat else 1)


def test_the_reader_is_told_where_each_piece_comes_from(tmp_path, fake_index, tiny_checkpoint, monkeypatch):
    seen = _recording_reader_inputs(monkeypatch)
    rag = RAG(tmp_path, index=fake_index, config=RAGConfig(model_path=str(tiny_checkpoint), device="cpu"))
    rag.ask("How much notice is needed to terminate?", context_tokens=1500)
    pieces, _ = seen[0]
    assert len(pieces) > 1
    for piece in pieces:
        # the piece's text is the file's lines line_start..line_end (chunks end without their newline)
        lines = Path(piece.path).read_text().splitlines()
        assert piece.text == "\n".join(lines[piece.line_start - 1 : piece.line_end])
        assert piece.page is None and f"lines {piece.line_start}-{piece.line_end}" in piece.header
        assert not piece.section or piece.section in piece.header


def test_generate_reads_the_same_layout(tmp_path, fake_index, monkeypatch):
    from gdn2_model.tokenizer import QUESTION

    seen = _recording_reader_inputs(monkeypatch)
    with_head = _tiny_checkpoint(tmp_path / "lm", lm_head=True)
    cfg = RAGConfig(model_path=str(with_head), device="cpu", max_new_tokens=2, repeat_question=True)
    rag = RAG(tmp_path, index=fake_index, config=cfg)
    answer = rag.ask("When does the reset link expire?", context_tokens=600, generate=True)
    assert isinstance(answer.generated, str) and len(seen) == 2  # extract, then generate
    (_, extracted), (_, generated) = seen
    assert extracted.input_ids.tolist() == generated.input_ids.tolist()
    marker = rag.reader._reader.tokenizer.token_to_id(QUESTION)
    assert int((generated.input_ids == marker).sum()) == 2
