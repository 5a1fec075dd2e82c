"""rag eval's source matching against the absolute paths the index stores."""

from __future__ import annotations

import pytest

from gdn2_rag.errors import RagError
from gdn2_rag.evaluate import _same_source, eval_command


def test_relative_source_matches_by_trailing_path_components(tmp_path):
    path = "/home/me/corpus/docs/faq.md"
    assert _same_source(path, "faq.md")
    assert _same_source(path, "docs/faq.md")
    assert _same_source(path, "./docs/faq.md")
    assert _same_source(path, path)
    assert not _same_source(path, "aq.md")
    assert not _same_source(path, "other/faq.md")
    assert not _same_source(path, "/elsewhere/docs/faq.md")


def test_eval_refuses_a_bad_out_path_before_answering(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "q", "answers": ["a"]}\n')
    for bad in (tmp_path / "missing" / "r.json", tmp_path):
        # the index does not exist either: the --out check must come first
        with pytest.raises(RagError, match="cannot write the report"):
            eval_command(str(questions), index=str(tmp_path / "no-index"), out=str(bad))


def test_a_question_file_that_is_not_utf8_is_a_user_error(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_bytes('{"question": "Qué?", "answers": ["a"]}\n'.encode("latin-1"))
    with pytest.raises(RagError, match="not UTF-8"):
        eval_command(str(questions), index=str(tmp_path / "no-index"))
