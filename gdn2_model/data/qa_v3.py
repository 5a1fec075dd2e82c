"""Training questions for reader v3 that read like a user's: typed generators, paraphrase templates, synonyms.

Every generator reads one chunk of a document and proposes `QA(kind, question, start, end, cues)`: the
answer is chunk[start:end] verbatim; `cues` are extra char spans of evidence (an option's tag line, the
heading of an exit-status list) so evidence can span several lines. Kinds:

    definition  "What counts as Source form?"             ("X" means ..., code docstrings)
    option      "What happens if I pass -a to ls?"        and the reverse "Which ls flag ...?"
    default     "What is the default value of timeout in urlopen()?", "... by default ...", constants
    exit_code   "What exit code does grep return if no lines were selected?" and its reverse
    limit       "How long must the offer remain valid?"   (amounts and durations)
    date        "When was version 3 of the GPL published?", copyright years
    version     "Which version of the license is this?"
    who/where/which  copyright holders, authors, upstream contacts, source URLs, licenses, FILES paths
    wh          the sentence-level wh-questions of `gdn2_model.data.qa`, reworded

`paraphrase` rewrites questions with a small hand-written synonym table (legal, support, code wording) and
casual surface forms. `V3SampleMaker` hides the evidence chunk among distractors (same document, same
domain); with probability `p_unanswerable` the gold document is removed entirely: the target is abstain.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gdn2_model.data import qa as qa1
from gdn2_model.data.chunk_bm25 import ChunkBM25
from gdn2_model.data.corpus import Document
from gdn2_model.data.keyed_facts import keyed_facts
from gdn2_model.data.sample import chunk_text
from gdn2_model.data.written import WrittenQA
from gdn2_model.prompt import ContextPiece

CHARS_PER_TOKEN_V3 = 4.2  # MiniLM WordPiece on this corpus, used only to size contexts


@dataclass(frozen=True)
class QA:
    kind: str
    question: str
    start: int
    end: int
    cues: tuple[tuple[int, int], ...] = ()


@dataclass
class V3Sample:
    """A question over pieces; `answer` = (piece, char start, char end) or None (abstain); `evidence` =
    char spans (piece, start, end) whose lines are the evidence lines."""

    question: str
    pieces: list[ContextPiece]
    answer: tuple[int, int, int] | None
    evidence: list[tuple[int, int, int]]
    kind: str
    domain: str
    doc_id: str
    answer_text: str = ""
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["pieces"] = [[p.text, p.header] for p in self.pieces]
        return d

    @classmethod
    def from_json(cls, d: dict) -> V3Sample:
        d = dict(d)
        d["pieces"] = [ContextPiece(t, h) for t, h in d["pieces"]]
        d["answer"] = tuple(d["answer"]) if d["answer"] is not None else None
        d["evidence"] = [tuple(e) for e in d["evidence"]]
        return cls(**d)

    def check(self) -> None:
        if self.answer is not None:
            p, s, e = self.answer
            got = self.pieces[p].text[s:e]
            if got != self.answer_text or not got.strip():
                raise ValueError(f"answer {self.answer_text!r} not at its span (found {got!r})")


# ------------------------------------------------------------------------------------------- paraphrase
SYNONYMS: dict[str, list[str]] = {
    # legal
    "redistribute": ["share", "pass on", "distribute"],
    "redistributions": ["copies you distribute", "redistributed copies"],
    "distribute": ["share", "hand out", "pass on"],
    "software": ["program", "code", "software"],
    "license": ["licence", "license terms", "license"],
    "modify": ["change", "alter", "edit"],
    "modifications": ["changes", "edits"],
    "retain": ["keep", "preserve"],
    "warranty": ["guarantee", "warranty"],
    "liable": ["responsible", "liable"],
    "terminate": ["end", "cancel"],
    "termination": ["ending", "cancellation"],
    "grant": ["give", "provide"],
    "means": ["refers to", "stands for"],
    "contributor": ["author", "contributor"],
    "copyright": ["copyright", "rights"],
    "holder": ["owner", "holder"],
    "notice": ["statement", "notice"],
    "obtain": ["get", "receive"],
    "provide": ["give", "supply", "offer"],
    "permitted": ["allowed", "ok"],
    "prohibited": ["forbidden", "not allowed"],
    "require": ["need", "demand"],
    "must": ["has to", "needs to", "must"],
    "shall": ["must", "will"],
    "may": ["can", "is allowed to"],
    # support
    "option": ["flag", "switch", "option"],
    "options": ["flags", "switches"],
    "command": ["program", "tool", "command"],
    "display": ["show", "print"],
    "print": ["show", "output", "display"],
    "directory": ["folder", "dir"],
    "file": ["file", "document"],
    "files": ["files", "documents"],
    "delete": ["remove", "erase"],
    "remove": ["delete", "get rid of"],
    "create": ["make", "generate"],
    "error": ["failure", "problem"],
    "default": ["standard", "default"],
    "exit": ["exit", "return"],
    "status": ["status", "code"],
    "configuration": ["config", "settings"],
    "ignore": ["skip", "disregard"],
    "verbose": ["detailed", "chatty"],
    "output": ["output", "result"],
    "run": ["execute", "launch", "start"],
    "use": ["use", "pass", "specify"],
    "written": ["authored", "developed", "written"],
    "wrote": ["authored", "developed", "created"],
    # code
    "function": ["function", "method", "routine"],
    "parameter": ["argument", "param", "parameter"],
    "value": ["value", "setting"],
    "return": ["return", "give back", "produce"],
    "set": ["set", "configured", "assigned"],
    "module": ["module", "library"],
}
_SYN_WORD = re.compile(r"\b[a-z]+\b")
PREFIXES = [
    "",
    "",
    "",
    "",
    "Quick question: ",
    "I need to know: ",
    "Can you tell me: ",
    "Do you know ",
    "Hey, ",
]


def paraphrase(q: str, rng: random.Random, p_syn: float = 0.35) -> str:
    """Swap table words for synonyms, then vary the surface form (case, question mark, prefix)."""
    quoted = [(m.start(), m.end()) for m in re.finditer(r'"[^"]*"|\S*[-_./()]\S*', q)]

    def sub(m: re.Match) -> str:
        w = m.group()
        if any(s <= m.start() < e for s, e in quoted) or w not in SYNONYMS or rng.random() > p_syn:
            return w
        return rng.choice(SYNONYMS[w])

    q = _SYN_WORD.sub(sub, q)
    pre = rng.choice(PREFIXES)
    if pre:
        q = pre + (q[0].lower() + q[1:] if pre.strip()[-1] in ":," or pre.startswith("Do") else q)
    r = rng.random()
    if r < 0.12:
        q = q.lower()
    elif r < 0.2:
        q = q.rstrip("?").rstrip()
    return " ".join(q.split())


def _t(rng: random.Random, templates: Sequence[str], **kw: str) -> str:
    return rng.choice(templates).format(**kw)


def _doc_name(title: str, domain: str) -> str:
    if domain == "support":
        return re.sub(r"\.\d\w*$", "", title.split("/")[0] if "/" not in title else title.split("/")[0])
    if domain == "legal":
        return title.removesuffix(" copyright")
    return title.removesuffix(".py").replace("/", ".")


def _in(rng: random.Random, name: str, p: float = 0.6) -> str:
    return rng.choice([f" in {name}", f" for {name}", f" of {name}"]) if rng.random() < p else ""


# ------------------------------------------------------------------------------------------- generators
_DATE = re.compile(
    r"\b((?:January|February|March|April|May|June|July|August|September|October|November|December)"
    r"\s+\d{1,2},?\s+\d{4}|\d{1,2}\s+(?:January|February|March|April|May|June|July|August|September|"
    r"October|November|December)\s+\d{4}|(?:19|20)\d\d-[01]\d-[0-3]\d)\b"
)
_VERSION = re.compile(r"\b[Vv]ersion\s+(\d+(?:\.\d+)*)\b")
_COPYRIGHT = re.compile(
    r"Copyright:?\s*(?:\([cC]\)|©)?\s*((?:\d{4}\s*[-–,]\s*)*\d{4}),?\s+(?:by\s+)?([A-Z][^\n<(]{2,60}?)\s*(?:[<(.\n]|$)"
)
_FIELD = re.compile(r"^(Upstream-Name|Upstream-Contact|Source|License):[ \t]*(\S[^\n]{1,100})$", re.M)
_EXIT_LIST = re.compile(r"^[ \t]*(\d{1,3})[ \t]*\n?[ \t]*((?:if|when|on)\s+[^\n]{3,100}?)[,.;]?$", re.M)
_EXIT_INLINE = re.compile(
    r"(?:exit status|exit code|return code|exits? with(?: status)?|returns?)\s+(?:is\s+)?(\d{1,3})\s+"
    r"((?:if|when|on)\s+[^.;,\n]{3,80})"
)
_DEFAULT = re.compile(
    r"(?:[Tt]he default(?: value)?(?: of| for)?\s+([\w -]{0,30}?)\s*is|[Dd]efaults? to|[Bb]y default,?)\s+"
    r"([^.;,\n()]{1,40})"
)
_AUTHOR = re.compile(r"\b[Ww]ritten by\s+([A-Z][^.\n]{3,80})")
_FILEPATH = re.compile(r"^[ \t]*(/[\w./-]{3,60}|~/[\w./-]{2,60})[ \t]*\n[ \t]*([A-Za-z][^\n]{8,100})$", re.M)
_OPT_TAG = re.compile(r"^-{1,2}[A-Za-z0-9]", re.M)


def _line_span(text: str, pos: int) -> tuple[int, int]:
    s = text.rfind("\n", 0, pos) + 1
    e = text.find("\n", pos)
    return s, (len(text) if e < 0 else e)


def definitions(text: str, name: str, rng: random.Random) -> list[QA]:
    out = []
    for m in qa1._DEF.finditer(text):
        term = m.group(1).strip()
        s, e = m.start(2), qa1._words_prefix(text, m.start(2), m.end(2), 14)
        q = _t(
            rng,
            [
                'What does "{t}" mean{n}?',
                "What does {t} mean{n}?",
                "How is {t} defined{n}?",
                "What is meant by {t}{n}?",
                "What counts as {t}{n}?",
                "Define {t}{n}.",
                "What is the definition of {t}{n}?",
                "{t}{n}: what is that?",
            ],
            t=term if rng.random() < 0.7 else term.lower(),
            n=_in(rng, name),
        )
        out.append(QA("definition", q, s, e, ((m.start(1), m.end(1)),)))
    return out


def options(text: str, name: str, rng: random.Random) -> list[QA]:
    out = []
    for m in qa1._OPT.finditer(text):
        tag = m.group(1).rstrip()
        flag = tag.split(",")[0].split("=")[0].split("[")[0].strip()
        desc_s, desc_e = m.start(2), qa1._words_prefix(text, m.start(2), m.end(2), 12)
        desc = " ".join(text[desc_s:desc_e].split())
        tag_span = (m.start(1), m.start(1) + len(tag))
        q = _t(
            rng,
            [
                "What does {f} do in {c}?",
                "What does the {f} option of {c} do?",
                "What happens if I run {c} with {f}?",
                "What is {c} {f} for?",
                "{c} {f}?",
                "Explain the {f} flag of {c}.",
                "What is the purpose of {f} in {c}?",
            ],
            f=flag,
            c=name,
        )
        out.append(QA("option", q, desc_s, desc_e, (tag_span,)))
        if (
            len(desc.split()) >= 3
            and desc[0].isalpha()
            and desc.split()[0].lower()
            not in (
                "with",
                "if",
                "when",
                "the",
                "a",
                "an",
                "this",
                "see",
                "same",
                "like",
                "equivalent",
                "deprecated",
                "synonym",
                "alias",
            )
        ):
            desc = desc.rstrip(" ;:,.(")
            fs = m.start(1)
            rq = _t(
                rng,
                [
                    "Which {c} option should I use to {d}?",
                    "How do I {d} with {c}?",
                    "Which flag makes {c} {d}?",
                    "What {c} switch do I need to {d}?",
                ],
                c=name,
                d=desc[0].lower() + desc[1:].rstrip("."),
            )
            out.append(QA("which", rq, fs, fs + len(flag), ((desc_s, desc_e),)))
    return out


def code_items(text: str, name: str, rng: random.Random) -> list[QA]:
    out = []
    for m in qa1._DEFN.finditer(text):
        func, params_s = m.group(1), m.start(2)
        for pm in qa1._PARAM_DEFAULT.finditer(m.group(2)):
            val = pm.group(2).rstrip()
            if not val:
                continue
            s = params_s + pm.start(2)
            q = _t(
                rng,
                [
                    "What is the default value of {p} in {f}()?",
                    "If I don't pass {p} to {f}, what value is used?",
                    "What does {p} default to in {m}.{f}?",
                    "{f}() {p} default?",
                    "What is the default {p} of {f}{n}?",
                ],
                p=pm.group(1),
                f=func,
                m=name,
                n=_in(rng, name),
            )
            out.append(QA("default", q, s, s + len(val), ((m.start(1), m.end(1)),)))
        if m.group(4) and len(m.group(4).split()) >= 3:
            ds = m.start(4) + len(m.group(4)) - len(m.group(4).lstrip())
            de = qa1._words_prefix(text, ds, m.end(4), 12)
            q = _t(
                rng,
                ["What does {f}() do{n}?", "What is {f} for{n}?", "Explain {f}(){n}.", "Purpose of {m}.{f}?"],
                f=func,
                m=name,
                n=_in(rng, name),
            )
            out.append(QA("definition", q, ds, de, ((m.start(1), m.end(1)),)))
    for m in qa1._CONST.finditer(text):
        q = _t(
            rng,
            ["What is {k} set to{n}?", "What value does {m}.{k} have?", "What is the value of {k}{n}?"],
            k=m.group(1),
            m=name,
            n=_in(rng, name),
        )
        out.append(QA("default", q, m.start(2), m.end(2), ((m.start(1), m.end(1)),)))
    return out


def _nearest_option(text: str, pos: int) -> str | None:
    """The flag of the option whose description holds `pos` (tag line above, no blank line between)."""
    block_start = text.rfind("\n\n", 0, pos) + 2 if text.rfind("\n\n", 0, pos) >= 0 else 0
    m = _OPT_TAG.search(text, block_start, pos)
    if m is None:
        return None
    return text[m.start() : _line_span(text, m.start())[1]].split(",")[0].split("=")[0].split()[0]


def defaults(text: str, name: str, rng: random.Random) -> list[QA]:
    out = []
    for m in _DEFAULT.finditer(text):
        s, e = m.start(2), m.end(2)
        ans = text[s:e].strip()
        if len(ans) < 1 or len(ans.split()) > 6:
            continue
        e = s + len(text[s:e].rstrip())
        flag = _nearest_option(text, m.start())
        thing = (m.group(1) or "").strip()
        if flag:
            q = _t(
                rng,
                [
                    "What is the default for {f} in {c}?",
                    "What does {c} {f} default to?",
                    "If I don't set {f}, what does {c} use?",
                ],
                f=flag,
                c=name,
            )
        elif thing:
            q = _t(
                rng,
                ["What is the default {t}{n}?", "What {t} is used by default{n}?", "Default {t}{n}?"],
                t=thing,
                n=_in(rng, name, 0.8),
            )
        else:
            ls, le = _line_span(text, m.start())
            words = qa1._WORDS.findall(text[ls : m.start()])[-5:]
            if len(words) < 2:
                continue
            q = f"What is the default for {' '.join(words)}{_in(rng, name, 0.8)}?"
        out.append(QA("default", q, s, e))
    return out


def exit_codes(text: str, name: str, rng: random.Random) -> list[QA]:
    out = []
    low = text.lower()
    listed = any(h in low for h in ("exit status", "exit code", "return value", "diagnostics"))
    found = list(_EXIT_INLINE.finditer(text)) + (list(_EXIT_LIST.finditer(text)) if listed else [])
    for m in found:
        code, cond = m.group(1), m.group(2).rstrip(" ,.;")
        cs, ce = m.start(2), m.start(2) + len(cond)
        q = _t(
            rng,
            [
                "What exit code does {c} return {w}?",
                "Which exit status does {c} give {w}?",
                "What does {c} exit with {w}?",
                "Exit status of {c} {w}?",
            ],
            c=name,
            w=cond,
        )
        out.append(QA("exit_code", q, m.start(1), m.end(1), ((cs, ce),)))
        q2 = _t(
            rng,
            [
                "What does exit status {n} mean for {c}?",
                "When does {c} exit with {n}?",
                "{c} returned {n}, what does that mean?",
                "What does exit code {n} of {c} indicate?",
            ],
            c=name,
            n=code,
        )
        out.append(QA("exit_code", q2, cs, ce, ((m.start(1), m.end(1)),)))
    return out


def limits(text: str, name: str, rng: random.Random) -> list[QA]:
    out = []
    for m in qa1._WH_AMOUNT.finditer(text):
        ctx = qa1._norm(m.group(1))
        if qa1._fragment(ctx):
            continue
        time_unit = m.group(3).rstrip("s") in qa1._TIME_UNITS
        how = "How long" if time_unit else "How many"
        ans = m.group(2).lower()
        lim = "maximum" if any(w in ans for w in ("at most", "up to", "no more", "within")) else "limit"
        q = _t(
            rng,
            ["{h} {c}?", "What is the {l} for {c}{n}?", "{c}: {hl}?", "What {what} applies: {c}?"],
            h=how,
            c=ctx,
            l=("time " + lim) if time_unit else lim,
            hl=how.lower(),
            n=_in(rng, name, 0.5),
            what="period" if time_unit else "number",
        )
        out.append(QA("limit", q, m.start(2), m.end(2)))
    return out


def dates_versions_who(text: str, name: str, rng: random.Random, domain: str) -> list[QA]:
    out = []
    for m in _DATE.finditer(text):
        ls, le = _line_span(text, m.start())
        line = text[ls:le]
        v = _VERSION.search(line)
        if v:
            q = _t(
                rng,
                [
                    "When was version {v} of {n} released?",
                    "What is the date of version {v} of {n}?",
                    "When was {n} version {v} published?",
                ],
                v=v.group(1),
                n=name,
            )
        else:
            q = _t(
                rng,
                [
                    "What date is given in {n}?",
                    "When was {n} written?",
                    "What is the date of {n}?",
                    "When was {n} last updated?",
                ],
                n=name,
            )
        out.append(QA("date", q, m.start(1), m.end(1)))
    for m in _VERSION.finditer(text[:3000]):
        if domain != "legal" and "license" not in text[max(0, m.start() - 80) : m.start()].lower():
            continue
        q = _t(
            rng,
            [
                "Which version of {n} is this?",
                "What version of the license is {n}?",
                "What is the version number of {n}?",
            ],
            n=name,
        )
        out.append(QA("version", q, m.start(1), m.end(1)))
        break
    for m in _COPYRIGHT.finditer(text):
        holder = m.group(2).rstrip(" ,.")
        if len(holder) < 3 or holder.lower().startswith(("notice", "holder", "and ", "the above", "law")):
            continue
        hs = m.start(2)
        q = _t(
            rng,
            [
                "Who holds the copyright{n}?",
                "Who is the copyright holder{n}?",
                "Who owns {x}?",
                "Who has the copyright on {x}?",
            ],
            n=_in(rng, name, 0.9),
            x=name,
        )
        out.append(QA("who", q, hs, hs + len(holder), ((m.start(1), m.end(1)),)))
        q2 = _t(
            rng,
            [
                "Which years does the copyright{n} cover?",
                "When was {x} copyrighted?",
                "What year is the copyright{n}?",
            ],
            n=_in(rng, name, 0.9),
            x=name,
        )
        out.append(QA("date", q2, m.start(1), m.end(1), ((hs, hs + len(holder)),)))
    for m in _FIELD.finditer(text):
        f, val = m.group(1), m.group(2).rstrip()
        tmpl = {
            "Upstream-Name": ["What is the upstream name of {x}?", "What is {x} called upstream?"],
            "Upstream-Contact": [
                "Who is the upstream contact for {x}?",
                "Whom do I contact upstream about {x}?",
            ],
            "Source": [
                "Where can I get the source of {x}?",
                "Where does {x} come from?",
                "Where is the upstream source for {x}?",
            ],
            "License": [
                "Which license covers {x}?",
                "What license is {x} under?",
                "Under which license is {x}?",
            ],
        }[f]
        kind = {"Source": "where", "License": "which", "Upstream-Contact": "who", "Upstream-Name": "which"}[f]
        out.append(QA(kind, _t(rng, tmpl, x=name), m.start(2), m.start(2) + len(val)))
    for m in _AUTHOR.finditer(text):
        a = m.group(1).rstrip(" ,")
        q = _t(rng, ["Who wrote {x}?", "Who is the author of {x}?", "Who developed {x}?"], x=name)
        out.append(QA("who", q, m.start(1), m.start(1) + len(a)))
    for m in _FILEPATH.finditer(text):
        desc = qa1._norm(m.group(2)).rstrip(".")
        q = _t(
            rng,
            [
                "Where is the file for {d} of {x}?",
                "Which file holds {d} for {x}?",
                "What path does {x} use for {d}?",
            ],
            d=desc[0].lower() + desc[1:],
            x=name,
        )
        out.append(QA("where", q, m.start(1), m.end(1), ((m.start(2), m.end(2)),)))
    return out


def wh(text: str, name: str, rng: random.Random) -> list[QA]:
    return [QA("wh", q, s, e) for q, s, e in qa1.wh_questions(text, name)]


def generate(text: str, title: str, domain: str, rng: random.Random) -> list[QA]:
    """Every typed question this chunk supports (questions already reworded); answers are non-empty."""
    name = _doc_name(title, domain)
    out: list[QA] = []
    if domain == "legal":
        out += definitions(text, name, rng)
    elif domain == "support":
        out += options(text, name, rng) + exit_codes(text, name, rng)
    else:
        out += code_items(text, name, rng)
    out += defaults(text, name, rng) if domain != "code" else []
    out += limits(text, name, rng) + dates_versions_who(text, name, rng, domain) + wh(text, name, rng)
    keep = []
    for qa in out:
        ans = text[qa.start : qa.end]
        if not ans.strip() or qa.end - qa.start > 200 or ans != ans.strip():
            continue
        keep.append(QA(qa.kind, paraphrase(qa.question, rng), qa.start, qa.end, qa.cues))
    return keep


# ------------------------------------------------------------------------------------------- samples
KIND_WEIGHT = {
    "wh": 0.4,
    "exit_code": 3.0,
    "limit": 2.0,
    "date": 1.5,
    "who": 1.5,
    "where": 2.0,
    "version": 0.6,
}


class V3SampleMaker:
    """Samples of ~target_tokens MiniLM tokens: evidence chunk among same-document and same-domain chunks."""

    def __init__(
        self,
        docs: Sequence[Document],
        chunk_chars: int = 1000,
        p_unanswerable: float = 0.2,
        p_retrieved: float = 0.0,
    ) -> None:
        if not docs:
            raise ValueError("V3SampleMaker needs at least one document")
        if not 0.0 <= p_retrieved <= 1.0:
            raise ValueError(f"p_retrieved must be in [0, 1], got {p_retrieved}")
        self.docs = list(docs)
        self.chunk_chars = chunk_chars
        self.p_unanswerable = p_unanswerable
        self.p_retrieved = p_retrieved
        self._chunks = [chunk_text(d.text, chunk_chars) for d in self.docs]
        self.by_domain: dict[str, list[int]] = {}
        for i, d in enumerate(self.docs):
            if self._chunks[i]:
                self.by_domain.setdefault(d.domain, []).append(i)
        self._flat = [(di, ci) for di, cs in enumerate(self._chunks) for ci in range(len(cs))]
        self._bm25: ChunkBM25 | None = None  # built at the first retrieved layout (a few seconds)
        self._by_id = {d.doc_id: i for i, d in enumerate(self.docs)}

    def retrieved(self, question: str, k: int) -> list[tuple[int, int]]:
        """(doc, chunk) of the k chunks a keyword retriever ranks best for `question`, best first."""
        if self._bm25 is None:
            pieces = (self.piece(di, ci) for di, ci in self._flat)
            self._bm25 = ChunkBM25([p.header + "\n" + p.text for p in pieces])
        return [self._flat[i] for i in self._bm25.search(question, k)]

    def piece(self, di: int, ci: int) -> ContextPiece:
        d = self.docs[di]
        s, e = self._chunks[di][ci]
        return ContextPiece(d.text[s:e], qa1._header(d, s))

    def sample(
        self, rng: random.Random, target_tokens: int, domain: str | None = None, tries: int = 60
    ) -> V3Sample:
        domains = sorted(self.by_domain)
        for _ in range(tries):
            dom = domain or rng.choice(domains)
            # questions of up to 3 chunks, then a kind by weight (rare kinds up, generic wh down)
            cands: list[tuple[int, int, QA]] = []
            for _ in range(3):
                dj = rng.choice(self.by_domain[dom])
                cj = rng.randrange(len(self._chunks[dj]))
                p = self.piece(dj, cj)
                cands += [(dj, cj, q) for q in generate(p.text, self.docs[dj].title, dom, rng)]
            if not cands:
                continue
            kinds = sorted({q.kind for _, _, q in cands})
            kind = rng.choices(kinds, weights=[KIND_WEIGHT.get(k, 1.0) for k in kinds])[0]
            s = self._place(rng, *rng.choice([c for c in cands if c[2].kind == kind]), target_tokens)
            if s is not None:
                return s
        raise ValueError(f"could not generate a question in {tries} tries (domain {domain!r})")

    def written_qa(self, wq: WrittenQA) -> tuple[int, int, QA] | None:
        """(doc, chunk, QA with chunk-relative offsets) of a written question: the chunk that holds the
        answer, with the part of the evidence inside it as a cue; None when the document is not among
        these documents or the answer crosses a chunk boundary."""
        di = self._by_id.get(wq.source)
        if di is None:
            return None
        got = wq.locate(self.docs[di].text)
        if got is None:
            return None
        a0, a1, e0, e1 = got
        for ci, (cs, ce) in enumerate(self._chunks[di]):
            if cs <= a0 and a1 <= ce:
                cue = (max(e0, cs) - cs, min(e1, ce) - cs)
                return di, ci, QA("written", wq.question, a0 - cs, a1 - cs, (cue,))
        return None

    def sample_written(
        self, rng: random.Random, target_tokens: int, written: Sequence[WrittenQA], tries: int = 20
    ) -> V3Sample | None:
        """A sample of one written question (drawn from `written`), laid out as `sample` lays out generated
        ones: random or retrieved distractors, the same share of unanswerable contexts."""
        for _ in range(tries):
            got = self.written_qa(written[rng.randrange(len(written))])
            if got is None:
                continue
            s = self._place(rng, *got, target_tokens)
            if s is not None:
                return s
        return None

    def sample_keyed(self, rng: random.Random, target_tokens: int) -> V3Sample | None:
        """Key-value facts of one form in random chunks of any domain, one key asked
        (`gdn2_model.data.keyed_facts`); the same share of unanswerable questions."""
        k = keyed_facts(rng, self._any_chunks, target_tokens * CHARS_PER_TOKEN_V3, self.p_unanswerable)
        if k is None:
            return None
        kind = ("keyed", "keyed", "keyed")  # kind, domain, doc_id: no document of the corpus is the source
        if k.answer is None:
            return V3Sample(k.question, k.pieces, None, [], *kind, "", {"unanswerable": True})
        return V3Sample(k.question, k.pieces, k.answer, [k.answer, k.fact], *kind, k.value)

    def _any_chunks(self, rng: random.Random, chars: float) -> list[ContextPiece]:
        pieces: list[ContextPiece] = []
        while chars > 0:
            p = self.piece(*self._flat[rng.randrange(len(self._flat))])
            pieces.append(p)
            chars -= len(p.text) + len(p.header)
        return pieces

    def _place(self, rng: random.Random, di: int, ci: int, qa: QA, target_tokens: int) -> V3Sample | None:
        """The sample of question `qa` on chunk `ci` of document `di`: its chunk among distractors, retrieved
        (p_retrieved) or random, filling ~target_tokens; None when no layout could be made."""
        dom = self.docs[di].domain
        ev = self.piece(di, ci)
        budget = target_tokens * CHARS_PER_TOKEN_V3 - len(ev.text)
        layout = (
            self._retrieved_layout(rng, qa.question, di, ci, budget)
            if rng.random() < self.p_retrieved
            else self._random_layout(rng, di, ci, dom, budget)
        )
        return None if layout is None else self._finish(rng, qa, di, ci, dom, ev, *layout)

    def _random_layout(
        self, rng: random.Random, di: int, ci: int, dom: str, budget: float
    ) -> tuple[list[ContextPiece], int]:
        """Distractors drawn at random: 0-3 other chunks of the same document, then chunks of the same
        domain (85 %) or of any domain; the evidence chunk goes to a random place."""
        pieces: list[ContextPiece] = []
        own = [j for j in range(len(self._chunks[di])) if j != ci]
        rng.shuffle(own)
        pool = self.by_domain[dom]
        n_own = rng.randint(0, 3)
        guard = 0
        while budget > 0 and guard < 400:
            guard += 1
            if own and n_own > 0:
                p, n_own = self.piece(di, own.pop()), n_own - 1
            else:
                dj = pool[rng.randrange(len(pool))] if rng.random() < 0.85 else rng.randrange(len(self.docs))
                if dj == di or not self._chunks[dj]:
                    continue
                p = self.piece(dj, rng.randrange(len(self._chunks[dj])))
            pieces.append(p)
            budget -= len(p.text) + len(p.header)
        return pieces, rng.randint(0, len(pieces))

    def _retrieved_layout(
        self, rng: random.Random, question: str, di: int, ci: int, budget: float
    ) -> tuple[list[ContextPiece], int] | None:
        """Distractors as retrieval would give them: the question's best keyword hits in rank order, and
        where the evidence chunk goes: its own rank among them (a rank past the context is moved to a
        random place in the first ten, since a user's retriever fuses a dense ranking too)."""
        hits = self.retrieved(question, 120)
        rank = next((r for r, h in enumerate(hits) if h == (di, ci)), None)
        pieces: list[ContextPiece] = []
        for dj, cj in hits:
            if budget <= 0:
                break
            if (dj, cj) == (di, ci):
                continue
            p = self.piece(dj, cj)
            pieces.append(p)
            budget -= len(p.text) + len(p.header)
        if not pieces:
            return None
        pos = rank if rank is not None and rank <= len(pieces) else rng.randint(0, min(10, len(pieces)))
        return pieces, pos

    def _finish(
        self, rng: random.Random, qa: QA, di: int, ci: int, dom: str, ev: ContextPiece,
        pieces: list[ContextPiece], pos: int,
    ) -> V3Sample | None:  # fmt: skip
        """The sample with the evidence chunk at `pos`, or (p_unanswerable) without its document."""
        answer_text = ev.text[qa.start : qa.end]
        # a piece quoting a distinctive answer elsewhere (a sibling package's identical copyright file)
        # would mark a right answer wrong: it leaves the context
        quotes = [len(answer_text) >= 6 and answer_text in p.text for p in pieces]
        pos -= sum(quotes[:pos])
        pieces = [p for p, q in zip(pieces, quotes, strict=True) if not q]
        unans = rng.random() < self.p_unanswerable
        doc_title = self.docs[di].title
        if unans:
            # the gold document leaves the context too
            pieces = [p for p in pieces if not p.header.startswith(doc_title + " (")]
            if not pieces:
                return None
            return V3Sample(
                qa.question,
                pieces,
                None,
                [],
                qa.kind,
                dom,
                self.docs[di].doc_id,
                "",
                {"unanswerable": True},
            )
        pieces.insert(pos, ev)
        evidence = [(pos, qa.start, qa.end)] + [(pos, s, e) for s, e in qa.cues]
        s = V3Sample(
            qa.question,
            pieces,
            (pos, qa.start, qa.end),
            evidence,
            qa.kind,
            dom,
            self.docs[di].doc_id,
            answer_text,
        )
        s.check()
        return s


# ------------------------------------------------------------------------------------------- exclusions
def excluded_documents(repo_root: str | Path = ".") -> set[str]:
    """Documents of the hand-written evaluation sets: bench/data/natural_docs.txt (one per line) and the
    `source` of every bench/data/*natural*.jsonl question ("{stdlib}" expands to this Python's standard
    library). Never train on them."""
    import sysconfig

    root = Path(repo_root)
    stdlib = sysconfig.get_paths()["stdlib"]
    out: set[str] = set()
    f = root / "bench" / "data" / "natural_docs.txt"
    if f.is_file():
        for line in f.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.add(line.split("\t")[0].strip().replace("{stdlib}", stdlib))
    for j in sorted((root / "bench" / "data").glob("*natural*.jsonl")):
        for line in j.read_text(encoding="utf-8").splitlines():
            try:
                src = json.loads(line).get("source")
            except (json.JSONDecodeError, AttributeError):
                continue
            if src:
                out.add(str(src))
    return out


def is_excluded(doc_id: str, excluded: set[str]) -> bool:
    """Exact path, a path suffix (relative entries), or a bare file name of the listed document."""
    for x in excluded:
        if doc_id == x or (("/" in x) and doc_id.endswith("/" + x.lstrip("./"))):
            return True
        if "/" not in x and Path(doc_id).name == x:
            return True
    return False
