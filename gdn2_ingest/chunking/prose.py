"""Legal and support chunking: paragraphs grouped into sections (a clause with its heading and
sub-clauses, a help section, a question with its answer) that stay whole whenever they fit.

Legal: numbered sections ("2.3", "Section 4", "Article IV", "§ 5"), "(a)" sub-clauses, ALL-CAPS or
Title-Case headings and markdown headings start a group; sub-clauses and definitions are kept whole.
Support: markdown / reStructuredText / ALL-CAPS (man page) headings, Debian changelog entries and
questions start a group, so a question is packed with its answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gdn2_ingest.chunking.base import FLOW, PARAGRAPH, SECTION, Piece, TokenIndex, paragraphs

_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")
_CLAUSE = re.compile(
    r"^\s*(?:(?:Section|SECTION|Article|ARTICLE|Clause|CLAUSE|§)\s*[\dIVXLC]+(?:\.\d+)*[.:]?"
    r"|\d{1,2}(?:\.\d{1,2}){0,3}[.)]?(?=\s+[A-Z\"\u201c(])|[IVX]{1,5}\.(?=\s))"
)
_SUBCLAUSE = re.compile(r"^\s*(?:\((?:[a-z]{1,2}|[ivx]{1,5}|\d{1,2})\)|[a-z]\))\s")
_QUESTION = re.compile(r"^\s*(?:Q\s*[:.]|Question\s*:|\*\*Q)", re.I)
# a Debian changelog entry: "bash (5.2.15-2) unstable; urgency=medium"
_CHANGELOG_ENTRY = re.compile(r"^[a-z0-9][a-z0-9.+-]* \([^()\s]+\) [\w.+ -]+; urgency=\w+")
_BOX_RULE = re.compile(r"^\s*([*=#-])\1{9,}\s*$")


@dataclass
class _Group:
    start: int
    end: int
    label: str
    paras: list[tuple[int, int, str]]  # (start, end, kind)


def _short(s: str, n: int = 80) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 3].rstrip() + "..."


def _is_title_line(line: str) -> bool:
    s = line.strip()
    if not s or len(s) > 80 or s.endswith((".", ",", ";", ":")) and not _CLAUSE.match(s):
        return False
    letters = [c for c in s if c.isalpha()]
    if len(letters) < 3:
        return False
    if sum(c.isupper() for c in letters) / len(letters) > 0.8:
        return True
    words = [w for w in re.findall(r"[A-Za-z][\w'-]*", s)]
    small = {"a", "an", "and", "the", "of", "to", "in", "for", "on", "or", "with", "your", "these", "by"}
    caps = sum(w[0].isupper() or w.lower() in small for w in words)
    return 1 <= len(words) <= 10 and caps == len(words) and words[0][0].isupper()


def _unbox(block: str) -> str:
    """A paragraph drawn in a frame (MPL-2.0's '*' boxes around sections 6 and 7) without the frame,
    so the heading inside it is seen; any other paragraph unchanged."""
    lines = block.strip("\n").split("\n")
    if len(lines) < 3 or not _BOX_RULE.match(lines[0]):
        return block
    ch = lines[0].strip()[0]
    inner = []
    for ln in lines[1:]:
        t = ln.strip()
        if _BOX_RULE.match(t) and t[0] == ch:
            continue
        t = t.removeprefix(ch).removesuffix(ch).strip()
        if t:
            inner.append(t)
    return "\n".join(inner) or block


def classify(block: str, domain: str) -> tuple[str, str]:
    """(kind, label) of a paragraph: heading | section | clause | subclause | question | para."""
    block = _unbox(block)
    lines = block.strip("\n").split("\n")
    first = lines[0].strip()
    m = _MD_HEADING.match(lines[0])
    if m:
        # a heading line alone, or a heading with its body in one block (rendered man pages)
        return ("heading" if len(lines) == 1 else "section"), _short(m.group(2))
    if len(lines) >= 2 and _RST_UNDERLINE.match(lines[1].strip()) and len(lines[1].strip()) >= len(first) - 1:
        return ("heading" if len(lines) == 2 else "section"), _short(first)
    if domain == "legal":
        cm = _CLAUSE.match(block)
        if cm:
            return "clause", _short(first, 60)
        if _SUBCLAUSE.match(block):
            return "subclause", ""
    if _CHANGELOG_ENTRY.match(first):
        return ("heading" if len(lines) == 1 else "section"), _short(first.split(";")[0])
    if domain == "support" and (_QUESTION.match(first) or (first.endswith("?") and len(lines) <= 3)):
        return "question", _short(first)
    if len(lines) == 1 and _is_title_line(first):
        return "heading", _short(first)
    # man pages and plain text: an ALL-CAPS first line heading the paragraph below it
    if (
        len(first) <= 40
        and first.isupper()
        and len(lines) > 1
        and re.fullmatch(r"[A-Z][A-Z0-9 /&()-]*", first)
    ):
        return "heading", _short(first)
    return "para", ""


def _groups(text: str, domain: str) -> list[_Group]:
    groups: list[_Group] = []
    for s, e in paragraphs(text):
        kind, label = classify(text[s:e], domain)
        starts_group = kind in ("heading", "section", "clause", "question")
        if not groups or starts_group:
            # a heading with no body yet joins the group that follows it
            if groups and starts_group and all(k == "heading" for _, _, k in groups[-1].paras):
                g = groups[-1]
                g.paras.append((s, e, kind))
                g.end, g.label = e, label or g.label
                continue
            groups.append(_Group(s, e, label, [(s, e, kind)]))
        else:
            g = groups[-1]
            g.paras.append((s, e, kind))
            g.end = e
    return groups


def prose_pieces(text: str, domain: str, tix: TokenIndex, budget: int) -> list[Piece]:
    """Pieces for legal/support text: a whole group when it fits, else its paragraphs with the
    heading (or question) glued to the paragraph after it."""
    pieces: list[Piece] = []
    for g in _groups(text, domain):
        if tix.count(g.start, g.end) <= budget:
            pieces.append(Piece(g.start, g.end, g.label, SECTION))
            continue
        paras = g.paras
        i = 0
        while i < len(paras):
            s, e, kind = paras[i]
            first = i == 0
            glue = kind in ("heading", "section", "clause", "question") and len(text[s:e].split("\n")) <= 2
            if glue and i + 1 < len(paras) and tix.count(s, paras[i + 1][1]) <= budget:
                e = paras[i + 1][1]
                i += 1
            level = (
                SECTION
                if first or kind in ("heading", "clause")
                else (FLOW if kind == "subclause" else PARAGRAPH)
            )
            pieces.append(Piece(s, e, g.label, level))
            i += 1
    return pieces


def section_marks(text: str, domain: str) -> list[tuple[int, str]]:
    """(offset, label) of every clause/heading start in `text`, in order: each paragraph's own label
    and, inside a paragraph, every line that is a heading or numbered clause on its own. PDF text
    has no blank lines between clauses, so this is how a PDF chunk learns which clauses it holds
    and which one is in force at its start (a clause running on from the page before)."""
    marks: list[tuple[int, str]] = []
    for s, e in paragraphs(text):
        kind, label = classify(text[s:e], domain)
        if label and kind != "para":
            marks.append((s, label))
        pos = text.find("\n", s, e)
        while pos != -1:
            ls = pos + 1
            le = text.find("\n", ls, e)
            line = text[ls : e if le == -1 else le]
            if line.strip():
                lab = ""
                m = _MD_HEADING.match(line)
                if m:
                    lab = _short(m.group(2))
                elif domain == "legal" and _CLAUSE.match(line):
                    lab = _short(line.strip(), 60)
                elif _is_title_line(line) and sum(c.isupper() for c in line) * 2 >= sum(
                    c.isalpha() for c in line
                ):
                    lab = _short(line.strip())
                if lab:
                    marks.append((ls, lab))
            pos = le
    return marks
