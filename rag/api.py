"""Library API and the functions behind the CLI commands. Filled in by the rag/ and ingest/ issues."""

from __future__ import annotations

from rag.errors import NotBuiltError


def ingest_command(paths, *, index, domain, json_out, verbose):
    raise NotBuiltError("`rag ingest` (issue 5)")


def ask_command(question, *, index, json_out, verbose):
    raise NotBuiltError("`rag ask` (issue 6)")


def search_command(query, *, index, json_out, verbose):
    raise NotBuiltError("`rag search` (issue 6)")


def info_command(*, index, json_out):
    raise NotBuiltError("`rag info` (issue 6)")
