"""Extractive questions generated automatically from real documents, answers as verbatim spans.

Each generator reads one passage of a document and proposes `(question, char_start, char_end)`
triples whose answer is `passage[char_start:char_end]`:

- legal: defined terms ("X" means ...) and the opening words of numbered clauses;
- support: what a man-page option does;
- code: parameter defaults and docstring first lines of `def`s, module-level constants;
- every domain: cloze (a distinctive word group blanked out of a quoted sentence), and wh-questions
  made from a sentence's own words: "What must you give?" from "you must give all recipients a copy",
  "How long ... valid?" from "valid for at least three years", "What is the default?" from "the
  default is 10". Cloze alone taught the reader to copy what follows a quoted phrase; wh-questions
  make it find a sentence from a question's words in a user's order and extract the missing part.

The cue always comes *before* the answer in the text (term before meaning, option before its
description, left context of a cloze): a causal reader decides at a token from what it has read,
so "which option is described as ..." (answer before its cue) is not asked.

`QATaskMaker` then hides the evidence passage among retrieved-like distractors (other passages of
the same document and of other documents of the same domain) up to a target length.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from gdn2_model.data.corpus import Document
from gdn2_model.data.sample import CHARS_PER_TOKEN, AnswerSpan, Sample, assemble_context, chunk_text
from gdn2_model.prompt import ContextPiece

Triple = tuple[str, int, int]

_DEF = re.compile(
    r'["\u201c]([A-Z][\w \-]{1,40})["\u201d]\s+'
    r"(?:shall\s+)?(?:means?|refers? to|includes?)\s+([^.;\n]{12,240})"
)
_CLAUSE = re.compile(r"^\s*((?:\d+\.)+\d*|\d+\)|\([a-z]\))\s+([A-Z][^\n]{30,})", re.M)
_OPT = re.compile(
    r"^(-{1,2}[A-Za-z0-9][\w\-]*(?:[=\[][^\n]{0,30})?(?:, -{1,2}[\w\-]+(?:[=\[][^\n]{0,30})?)*)"
    r"\n([^\n-][^\n]{15,})",
    re.M,
)
_DEFN = re.compile(
    r"^[ \t]*def (\w+)\(([^)]*)\)[^:\n]*:\n(?:[ \t]+[rRuU]?(\"\"\"|''')([^\n]{15,}?)(?:\"\"\"|'''|\n))?", re.M
)
_PARAM_DEFAULT = re.compile(r"(\w+)\s*(?::\s*[^=,]+)?=\s*([^,()\[\]]{1,30})")
_CONST = re.compile(r"^([A-Z][A-Z0-9_]{2,})\s*=\s*([^\n#]{1,40}?)\s*(?:#.*)?$", re.M)
_WORDS = re.compile(r"[A-Za-z0-9][\w'./-]*")
# a clause may wrap lines (licenses, man pages) but not cross a blank line or a sentence end
_CLAUSE_TEXT = r"(?:[^.;:!?\n()\[\]]|\n(?!\s*\n))"
_WH_MODAL = re.compile(
    r"\b((?:[A-Za-z][\w'-]*\s+){0,5}?[A-Za-z][\w'-]*)\s+(must|shall|may|can|should|will)\s+(not\s+)?"
    r"([a-z][a-z-]+)\s+(" + _CLAUSE_TEXT + r"{4,160})"
)
_WH_COPULA = re.compile(
    r"\b((?:[Tt]he|[Aa]n?|[Tt]his|[Ee]ach|[Aa]ny)\s+(?:[\w-]+\s+){0,4}?[\w-]+)\s+(is|are)\s+"
    r"(?!not\b)(" + _CLAUSE_TEXT + r"{4,120})"
)
_WH_AMOUNT = re.compile(
    r"((?:[A-Za-z][\w',-]*\s+){2,8}?)"
    r"((?:for|within|after|at least|at most|up to|no (?:more|less|later) than)\s+"
    r"(?:[\w-]+\s+)?(?:\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|twelve|thirty|sixty|ninety)"
    r"\s+(?:calendar\s+|business\s+)?(years?|months?|weeks?|days?|hours?|minutes?|seconds?|bytes?|"
    r"times|characters|lines|entries|copies))\b"
)
_TIME_UNITS = ("year", "month", "week", "day", "hour", "minute", "second")
# a subject ending in one of these is a clause fragment ("what is the user that there?"): no question
_FRAGMENT_END = frozenset(
    "a an the that there this which who it its or and if but so to of in on at by as get".split()  # noqa: SIM905
)


def _words_prefix(text: str, start: int, end: int, max_words: int) -> int:
    """End offset of at most `max_words` words of text[start:end]."""
    ws = list(_WORDS.finditer(text, start, end))
    if len(ws) <= max_words:
        return end
    return ws[max_words - 1].end()


def legal_questions(text: str, title: str) -> list[Triple]:
    out: list[Triple] = []
    for m in _DEF.finditer(text):
        term = m.group(1).strip()
        ds, de = m.start(2), _words_prefix(text, m.start(2), m.end(2), 14)
        out.append((f'In {title}, what does "{term}" mean?', ds, de))
    for m in _CLAUSE.finditer(text):
        s = m.start(2)
        out.append(
            (f"In {title}, how does clause {m.group(1)} begin?", s, _words_prefix(text, s, m.end(2), 10))
        )
    return out


def support_questions(text: str, title: str) -> list[Triple]:
    out: list[Triple] = []
    name = title.split(".")[0]
    for m in _OPT.finditer(text):
        tag = m.group(1).rstrip()
        desc_s, desc_e = m.start(2), _words_prefix(text, m.start(2), m.end(2), 12)
        first_opt = tag.split(",")[0].split("=")[0].split("[")[0]
        out.append((f"What does the {first_opt} option of {name} do?", desc_s, desc_e))
    return out


def code_questions(text: str, title: str) -> list[Triple]:
    out: list[Triple] = []
    module = title.removesuffix(".py").replace("/", ".")
    for m in _DEFN.finditer(text):
        func, params_s = m.group(1), m.start(2)
        for pm in _PARAM_DEFAULT.finditer(m.group(2)):
            val = pm.group(2).rstrip()
            if val:
                s = params_s + pm.start(2)
                out.append(
                    (
                        f"In {module}, what is the default of parameter {pm.group(1)} of {func}()?",
                        s,
                        s + len(val),
                    )
                )
        if m.group(4) and len(m.group(4).split()) >= 3:
            ds = m.start(4) + len(m.group(4)) - len(m.group(4).lstrip())
            de = _words_prefix(text, ds, m.end(4), 12)
            out.append((f"In {module}, how does the docstring of {func}() begin?", ds, de))
    for m in _CONST.finditer(text):
        out.append((f"In {module}, what is {m.group(1)} set to?", m.start(2), m.end(2)))
    return out


def cloze_questions(text: str, rng: random.Random, n: int = 2) -> list[Triple]:
    """Blank out a distinctive 1-3 word group of a sentence and quote the sentence around it."""
    out: list[Triple] = []
    words = list(_WORDS.finditer(text))
    if len(words) < 16:
        return out
    for _ in range(n * 4):
        if len(out) >= n:
            break
        i = rng.randrange(6, len(words) - 6)
        k = rng.choice((1, 1, 2, 3))
        span = words[i : i + k]
        ans = text[span[0].start() : span[-1].end()]
        if "\n" in ans or not (any(c.isdigit() or c.isupper() for c in ans) or len(ans) >= 7):
            continue
        left = text[words[i - 6].start() : span[0].start()]
        right = text[span[-1].end() : words[min(len(words) - 1, i + k + 5)].end()]
        if "\n\n" in left or "\n\n" in right:
            continue
        q = f'Fill in the blank: "{" ".join(left.split())} ____ {" ".join(right.split())}"'
        out.append((q, span[0].start(), span[-1].end()))
    return out


def _norm(words: str) -> str:
    return " ".join(words.split())


def _fragment(subject: str) -> bool:
    return subject.split()[-1].lower() in _FRAGMENT_END


def _answer_end(text: str, start: int, end: int, max_words: int = 12) -> int:
    """End of the first `max_words` words of text[start:end], without trailing "of the", "and", ..."""
    words = list(_WORDS.finditer(text, start, _words_prefix(text, start, end, max_words)))
    while len(words) > 1 and words[-1].group().lower() in _FRAGMENT_END:
        words.pop()
    return words[-1].end() if words else end


def wh_questions(text: str, title: str) -> list[Triple]:
    """Questions in a reader's words from single sentences; the answer always follows its cue."""
    out: list[Triple] = []
    for m in _WH_MODAL.finditer(text):
        subj, modal, neg, verb = _norm(m.group(1)), m.group(2), m.group(3) or "", m.group(4)
        if verb in ("be", "have", "not") or len(m.group(5).split()) < 2 or _fragment(subj):
            continue
        s = m.start(5)
        q = f"What {modal} {subj[0].lower() + subj[1:]} {neg}{verb}?"
        out.append((q, s, _answer_end(text, s, m.end(5))))
    for m in _WH_COPULA.finditer(text):
        s = m.start(3)
        subj = _norm(m.group(1))
        if _fragment(subj):
            continue
        out.append((f"What {m.group(2)} {subj[0].lower() + subj[1:]}?", s, _answer_end(text, s, m.end(3))))
    for m in _WH_AMOUNT.finditer(text):
        how = "How long" if m.group(3).rstrip("s") in _TIME_UNITS else "How many"
        out.append((f"{how} {_norm(m.group(1))}?", m.start(2), m.end(2)))
    return [(f"In {title}, {q[0].lower()}{q[1:]}" if i % 2 else q, s, e) for i, (q, s, e) in enumerate(out)]


GENERATORS: dict[str, Callable[[str, str], list[Triple]]] = {
    "legal": legal_questions,
    "support": support_questions,
    "code": code_questions,
}


def _header(doc: Document, start: int) -> str:
    line = doc.text.count("\n", 0, start) + 1
    return f"{doc.title} (line {line})"


class QATaskMaker:
    """Makes extractive QA samples from one split's documents, evidence hidden among distractors."""

    def __init__(self, docs: Sequence[Document], chunk_chars: int = 1200) -> None:
        if not docs:
            raise ValueError("QATaskMaker needs at least one document")
        self.docs = list(docs)
        self.chunk_chars = chunk_chars
        self._chunks = [chunk_text(d.text, chunk_chars) for d in self.docs]
        self.by_domain: dict[str, list[int]] = {}
        for i, d in enumerate(self.docs):
            if self._chunks[i]:
                self.by_domain.setdefault(d.domain, []).append(i)

    def piece(self, doc_i: int, chunk_i: int) -> ContextPiece:
        d = self.docs[doc_i]
        s, e = self._chunks[doc_i][chunk_i]
        return ContextPiece(d.text[s:e], _header(d, s))

    def _distractors(
        self, rng: random.Random, doc_i: int, chunk_i: int, domain: str, n: int
    ) -> list[ContextPiece]:
        own = [j for j in range(len(self._chunks[doc_i])) if j != chunk_i]
        rng.shuffle(own)
        pool = self.by_domain[domain]
        out = [self.piece(doc_i, j) for j in own[: max(1, n // 4)]]
        while len(out) < n:
            di = pool[rng.randrange(len(pool))]
            if di == doc_i and len(pool) > 1:
                continue
            out.append(self.piece(di, rng.randrange(len(self._chunks[di]))))
        rng.shuffle(out)
        return out

    def sample(
        self, rng: random.Random, target_tokens: int, domain: str | None = None, tries: int = 50
    ) -> Sample:
        """One QA sample of about `target_tokens` tokens (domain random unless given)."""
        domains = sorted(self.by_domain)
        for _ in range(tries):
            dom = domain or rng.choice(domains)
            if dom not in self.by_domain:
                raise ValueError(f"no documents of domain {dom!r}")
            doc_i = rng.choice(self.by_domain[dom])
            chunk_i = rng.randrange(len(self._chunks[doc_i]))
            ev = self.piece(doc_i, chunk_i)
            title = self.docs[doc_i].title
            triples, kind = GENERATORS[dom](ev.text, title), "extract"
            r = rng.random()
            if r < 0.4 or not triples:
                triples, kind = wh_questions(ev.text, title), "wh"
            if (r >= 0.4 and r < 0.6) or not triples:
                triples, kind = cloze_questions(ev.text, rng), "cloze"
            triples = [t for t in triples if ev.text[t[1] : t[2]].strip() and t[2] - t[1] <= 160]
            if not triples:
                continue
            q, s, e = rng.choice(triples)
            room = int(target_tokens * CHARS_PER_TOKEN * 0.6)
            if len(ev.text) > room:
                # short contexts: keep a window of the evidence around the answer, shifting its offsets
                # (at least half the window before the answer: the cue usually precedes it)
                before = rng.randint(room // 2, max(room // 2, room - (e - s)))
                lo = max(0, min(s - before, len(ev.text) - room))
                ev = ContextPiece(ev.text[lo : lo + max(room, e - lo)], ev.header)
                s, e = s - lo, e - lo
            n_distract = max(1, int(target_tokens * CHARS_PER_TOKEN / self.chunk_chars) + 1)
            distract = self._distractors(rng, doc_i, chunk_i, dom, n_distract)
            pieces, pos = assemble_context(rng, ev, distract, target_tokens)
            ans = AnswerSpan(pos, s, e, ev.text[s:e])
            return Sample(q, pieces, [ans], f"qa-{kind}", dom, self.docs[doc_i].doc_id)
        raise ValueError(f"could not generate a question in {tries} tries (domain {domain!r})")
