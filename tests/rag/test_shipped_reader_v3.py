"""The shipped reader (v3) through the pipeline on the CPU: it loads from the repository checkpoint plus the
installed MiniLM package, reads the assembled context, answers with a span of the cited file, and refuses
the v2-only settings with one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gdn2_rag import RAG, RAGConfig, RagError
from gdn2_rag.reading import default_checkpoint, read_calibration

SHARD_LIMIT = 15 * 1000 * 1000
CHECKPOINT_LIMIT = 64 * 1000 * 1000


def test_the_shipped_checkpoint_is_v3_small_and_holds_no_copy_of_minilm():
    from safetensors import safe_open

    from gdn2_model.reader import DEFAULT_CHECKPOINT as V2_CHECKPOINT
    from gdn2_model.readers import checkpoint_format

    ckpt = default_checkpoint()
    assert checkpoint_format(ckpt) == "v3" and checkpoint_format(V2_CHECKPOINT) == "v2"
    meta = json.loads((ckpt / "config.json").read_text())
    shards = [ckpt / f for f in meta["files"]]
    assert all(f.stat().st_size <= SHARD_LIMIT for f in shards)
    assert sum(f.stat().st_size for f in shards) <= CHECKPOINT_LIMIT
    frozen = tuple(meta["frozen_prefixes"])
    for f in shards:
        with safe_open(str(f), "pt") as s:
            # the embeddings and the frozen MiniLM layers come from the installed package at load time
            assert not [k for k in s.keys() if k.startswith(frozen)]  # noqa: SIM118 (not a dict)
    # it is calibrated, and its calibration keeps it off by default (it does not beat retrieval)
    cal = read_calibration(ckpt)
    assert cal is not None and cal.beats_retrieval is False


@pytest.fixture(scope="module")
def reader_rag(tmp_path_factory):
    from rag_corpus import CODE_MODULE, CONTRACT, HELP_PAGE
    from rag_fakes import FakeIndex

    root = tmp_path_factory.mktemp("corpus")
    files = {}
    for name, domain, text in [
        ("contract.txt", "legal", CONTRACT),
        ("password.md", "support", HELP_PAGE),
        ("retry.py", "code", CODE_MODULE),
    ]:
        (root / name).write_text(text, encoding="utf-8")
        files[root / name] = domain
    return root, FakeIndex.from_files(files)


def test_reader_v3_answers_with_a_span_of_the_cited_file(reader_rag):
    root, index = reader_rag
    rag = RAG(root / "idx", index=index, config=RAGConfig(device="cpu", require_reader=True))
    answer = rag.ask("Which state's law applies to the contract?", context_tokens=800)
    assert answer.mode == "reader" and "Delaware" in answer.text
    answer = rag.ask("How long is the password reset link valid?", context_tokens=800)
    assert answer.mode == "reader" and "45 minutes" in answer.text
    assert answer.model["path"] == str(default_checkpoint())
    assert answer.token_counter == "reader-v3-wordpiece"
    assert 0 < answer.context_tokens <= answer.context_budget == 800
    cited = answer.citations[0]
    lines = Path(cited.path).read_text().splitlines()[cited.line_start - 1 : cited.line_end]
    assert answer.text and answer.text in "\n".join(lines)


def test_reader_v3_refuses_read_twice_with_one_clear_error(reader_rag):
    root, index = reader_rag
    cfg = RAGConfig(device="cpu", require_reader=True, repeat_question=True)
    rag = RAG(root / "idx", index=index, config=cfg)
    with pytest.raises(RagError, match="repeat_question"):
        rag.ask("How much notice do I have to give?", context_tokens=800)
