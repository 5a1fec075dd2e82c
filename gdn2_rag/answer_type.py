"""What kind of answer a question asks for, and whether a candidate sentence holds one of that kind.

A bi-encoder (the evidence scorer's MiniLM) ranks the sentences that talk about a question's subject
first. A question such as "How many times will ssh ask for my password?" is answered by the one sentence
of that topic that holds a number ("... the default is 3"), not by the one that restates the topic best.
Classic factoid QA systems call this answer typing: the question's wh-word and head noun set the expected
type, and a candidate without an instance of it is unlikely to answer. These are general patterns of
English questions and of man pages, licenses and code, not rules for any one document.

    expected_types("What's the default port for SMTP over SSL?")  -> {"default", "number"}
    type_match({"default", "number"}, "SMTP_SSL_PORT = 465")      -> 1.0
"""

from __future__ import annotations

import re

_Q_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("date", r"^(when|since when)\b|\bwhat (year|date|month|day)\b|\bwhich (year|date|month)\b"),
        (
            "number",
            # the wh-phrase's head noun may follow "the" and one modifier: "what's the default port"
            r"\bhow (many|much|long|big|large|old|often|far)\b|\b(what|which)('s| is| are)?( the)?( \w+)? "
            r"(number|size|percentage|port|level|value|limit|timeout|length|width|priority)\b|"
            r"\b(maximum|minimum|max|min)\b|\bexit (status|code)\b|\breturn (code|value)\b",
        ),
        ("person", r"^(who|whom|whose)\b|\bwhich (company|organi[sz]ation|person|people|foundation)\b"),
        ("default", r"\bdefaults?\b|\bout of the box\b|\bunless (i|you)\b|\bif (i|you) (don't|do not)\b"),
        ("exception", r"\b(which|what) (exception|error|warning)\b|\braises?\b"),
        ("path", r"^where\b|\bwhich (file|directory|folder|path)\b|\bwhat (file|directory|path)\b"),
        ("option", r"\b(which|what) (option|flag|switch|argument)\b"),
    )
)

_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_C_RULES: dict[str, re.Pattern[str]] = {
    "date": re.compile(rf"\b(1[89]\d\d|20\d\d)\b|\b{_MONTH}\s+\d|\d\s+{_MONTH}", re.IGNORECASE),
    "number": re.compile(
        r"\d|\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
        r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
        r"hundred|thousand|million|twice)\b",
        re.IGNORECASE,
    ),
    "person": re.compile(
        r"\b(written|developed|maintained|created|authored) by\b|\bcopyright\b|\bauthors?\b|"
        r"\b[A-Z][a-z]+ [A-Z][a-z]+\b|\b(Inc|Ltd|Foundation|University|Corporation)\b"
    ),
    "default": re.compile(r"\bdefault|\bunless\b|\botherwise\b|^\s*[A-Za-z_][\w.]*\s*=\s*\S", re.I | re.M),
    "exception": re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b|\braise\b"),
    "path": re.compile(r"(^|[\s(\"'`])(/|~/|\./)[\w.\-]+"),
    "option": re.compile(r"(^|\s)--?[A-Za-z]"),
}


def expected_types(question: str) -> frozenset[str]:
    """The answer kinds a question asks for (empty when its form says nothing)."""
    q = question.lower().strip()
    return frozenset(kind for kind, pat in _Q_RULES if pat.search(q))


def type_match(kinds: frozenset[str], text: str) -> float:
    """The share of the expected kinds that `text` holds an instance of (0 when none is expected)."""
    if not kinds:
        return 0.0
    return sum(1 for k in kinds if _C_RULES[k].search(text)) / len(kinds)
