"""Ticket exports: JSON (a list, or an object holding one), JSONL and CSV; one record per document."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from gdn2_ingest.loaders.base import SkipFile, decode_text
from gdn2_ingest.types import Document

_ID_KEYS = ("id", "ticket_id", "key", "number", "uuid")
_TITLE_KEYS = ("subject", "title", "summary", "name")
# fields that are metadata rather than text users ask about
_SKIP_KEY = re.compile(r"(^|_)(id|uuid|url|created|updated|date|time|timestamp|at)$", re.I)


def _flatten(value, key: str, out: list[str], fields: list[str] | None) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{key}.{k}" if key else str(k), out, fields)
    elif isinstance(value, list):
        for v in value:
            _flatten(v, key, out, fields)
    elif isinstance(value, str) and value.strip():
        leaf = key.rsplit(".", 1)[-1]
        if fields is not None:
            if key in fields or leaf in fields:
                out.append(f"{key}: {value.strip()}")
        elif not _SKIP_KEY.search(leaf):
            out.append(f"{key}: {value.strip()}")


def record_document(
    path: Path, rec: dict, index: int, lines: tuple[int, int], fields: list[str] | None
) -> Document | None:
    """The record's text fields as `key: value` lines; it cites its `lines` of the file."""
    parts: list[str] = []
    _flatten(rec, "", parts, fields)
    if not parts:
        return None
    rid = next((str(rec[k]) for k in _ID_KEYS if rec.get(k) not in (None, "")), str(index + 1))
    title = next(
        (str(rec[k]).strip() for k in _TITLE_KEYS if isinstance(rec.get(k), str) and rec[k].strip()), ""
    )
    text = "\n".join(parts).replace("\r\n", "\n") + "\n"
    return Document(
        path=str(path),
        text=text,
        title=title or f"{path.name} #{rid}",
        fmt="record",
        sub=rid,
        line_offset=lines[0],
        source_lines=lines,
    )


def _records_from_json(obj) -> list[dict]:
    if isinstance(obj, list):
        return [r for r in obj if isinstance(r, dict)]
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        return [r for r in lists[0] if isinstance(r, dict)] if len(lists) == 1 else [obj]
    return []


def _delimiter(text: str) -> str:
    """The field separator of a CSV export: the most frequent of , ; tab | on the header line
    (spreadsheets in many locales export with ';')."""
    header = text.split("\n", 1)[0]
    return max(",;\t|", key=header.count)


def load_records(path: Path, data: bytes, kind: str, fields: list[str] | None) -> list[Document]:
    text = decode_text(data)
    rows: list[tuple[dict, tuple[int, int]]] = []
    if kind == "jsonl":
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise SkipFile(f"invalid JSONL at line {n}") from None
            if isinstance(rec, dict):
                rows.append((rec, (n, n)))
    elif kind == "json":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise SkipFile(f"invalid JSON ({exc})") from None
        # a JSON record's own lines are not tracked: it cites the whole file
        whole = (1, max(1, text.rstrip().count("\n") + 1))
        rows = [(r, whole) for r in _records_from_json(obj)]
    else:
        reader = csv.DictReader(io.StringIO(text), delimiter=_delimiter(text))
        try:
            # reading the header first makes line_num the header's last line
            _ = reader.fieldnames
            prev = reader.line_num
            for rec in reader:
                rows.append(({k: v for k, v in rec.items() if k is not None}, (prev + 1, reader.line_num)))
                prev = reader.line_num
        except csv.Error as exc:
            raise SkipFile(f"invalid CSV ({exc})") from None
    docs = [
        d
        for i, (r, lines) in enumerate(rows)
        if (d := record_document(path, r, i, lines, fields)) is not None
    ]
    if not docs:
        raise SkipFile(f"no records with text in {kind.upper()}")
    return docs
