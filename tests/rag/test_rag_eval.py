"""rag eval's source matching against the absolute paths the index stores."""

from __future__ import annotations

from rag.evaluate import _same_source


def test_relative_source_matches_by_trailing_path_components(tmp_path):
    path = "/home/me/corpus/docs/faq.md"
    assert _same_source(path, "faq.md")
    assert _same_source(path, "docs/faq.md")
    assert _same_source(path, "./docs/faq.md")
    assert _same_source(path, path)
    assert not _same_source(path, "aq.md")
    assert not _same_source(path, "other/faq.md")
    assert not _same_source(path, "/elsewhere/docs/faq.md")
