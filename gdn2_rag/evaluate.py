"""`rag eval FILE.jsonl`: score the whole pipeline on a user's own question set.

Each line is `{"question": str, "answers": [str, ...], "source": "path", "domain": str}`
(`source` and `domain` optional; `"answers": []` marks a question the documents do not answer; a source
starting with `{stdlib}/` names a file of this Python's standard library).
For every question the pipeline answers as `rag ask` would; we report, per domain and overall:

- retrieval hit@k: the expected `source` is among the retrieved passages (without a source: some
  passage contains one of the answers); a relative `source` matches by its trailing path
  components (`"faq.md"` or `"docs/faq.md"` matches `/home/me/docs/faq.md`);
- exact match and token F1 of the answer against the best acceptable answer (SQuAD normalisation:
  lower case, no punctuation or articles, single spaces);
- citation accuracy: a citation of the answer points at `source` (only questions with a source);
- answer+citation: the answer contains an acceptable answer (normalised) and its first citation is
  `source` (the review's measure of what a user gets);
- abstention: precision and recall of "the documents do not answer this" over the unanswerable questions.
"""

from __future__ import annotations

import functools
import json
import re
import string
import sysconfig
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gdn2_rag.config import RAGConfig
from gdn2_rag.errors import RagError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


class EvalSetError(RagError):
    """The question file is missing or malformed (message names the line)."""


@dataclass(frozen=True)
class EvalItem:
    question: str
    answers: tuple[str, ...]
    source: str | None = None
    domain: str | None = None


@dataclass
class EvalRow:
    """The outcome for one question."""

    question: str
    domain: str
    prediction: str
    mode: str
    hit: bool
    exact: float
    f1: float
    citation_ok: bool | None
    contains: bool = False
    answer_citation: bool | None = None
    answerable: bool = True
    abstained: bool = False
    score: float | None = None  # the answer's confidence (Answer.score), for calibrating a reader's threshold


@dataclass
class EvalReport:
    k: int
    rows: list[EvalRow] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per domain and `overall`: n, hit@k, EM, F1, citation accuracy (None: no question had a source)."""
        groups: dict[str, list[EvalRow]] = {}
        for r in self.rows:
            groups.setdefault(r.domain, []).append(r)
        out = {d: _aggregate(rs) for d, rs in sorted(groups.items())}
        out["overall"] = _aggregate(self.rows)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "summary": self.summary(), "rows": [asdict(r) for r in self.rows]}


def _aggregate(rows: Sequence[EvalRow]) -> dict[str, Any]:
    unanswerable = [r for r in rows if not r.answerable]
    abstained = [r for r in rows if r.abstained]
    rows = [r for r in rows if r.answerable]
    n = len(rows)
    cited = [r.citation_ok for r in rows if r.citation_ok is not None]
    both = [r.answer_citation for r in rows if r.answer_citation is not None]
    return {
        "n": n,
        "hit_at_k": sum(r.hit for r in rows) / n if n else 0.0,
        "exact_match": sum(r.exact for r in rows) / n if n else 0.0,
        "f1": sum(r.f1 for r in rows) / n if n else 0.0,
        "contains": sum(r.contains for r in rows) / n if n else 0.0,
        "citation_accuracy": sum(cited) / len(cited) if cited else None,
        "answer_citation": sum(both) / len(both) if both else None,
        "reader_answers": sum(r.mode == "reader" for r in rows),
        "unanswerable": len(unanswerable),
        # of the questions it declined, how many had no answer; of those with none, how many it declined
        "abstain_precision": sum(not r.answerable for r in abstained) / len(abstained) if abstained else None,
        "abstain_recall": (
            sum(r.abstained for r in unanswerable) / len(unanswerable) if unanswerable else None
        ),
        "abstained_answerable": sum(r.abstained for r in rows) / n if n else 0.0,
    }


def normalize_answer(s: str) -> str:
    """SQuAD-style normalisation: lower case, drop punctuation and articles, squeeze whitespace."""
    return " ".join(_ARTICLES.sub(" ", s.lower().translate(_PUNCT)).split())


def contains_answer(pred: str, golds: Sequence[str]) -> bool:
    """The normalised answer holds one of the normalised gold answers (a sentence holding it counts)."""
    p = normalize_answer(pred)
    return any(g and g in p for g in (normalize_answer(x) for x in golds))


def resolve_source(source: str) -> str:
    """`{stdlib}/json/decoder.py` -> this Python's standard library path; other sources unchanged."""
    prefix = "{stdlib}/"
    if source.startswith(prefix):
        return str(Path(sysconfig.get_paths()["stdlib"]) / source[len(prefix) :])
    return source


def exact_match(pred: str, golds: Sequence[str]) -> float:
    p = normalize_answer(pred)
    return float(any(p == normalize_answer(g) for g in golds))


def f1_score(pred: str, golds: Sequence[str]) -> float:
    """Best token-overlap F1 of `pred` against any gold answer."""
    best = 0.0
    pt = normalize_answer(pred).split()
    for g in golds:
        gt = normalize_answer(g).split()
        common = sum((Counter(pt) & Counter(gt)).values())
        if not pt or not gt:
            best = max(best, float(pt == gt))
        elif common:
            prec, rec = common / len(pt), common / len(gt)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def load_eval_set(path: str | Path) -> list[EvalItem]:
    """Read and validate a JSONL question set; raises EvalSetError naming the bad line."""
    p = Path(path)
    if not p.is_file():
        raise EvalSetError(f"no such question file: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EvalSetError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{p}:{n}: not JSON ({exc.msg})") from None
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("question"), str)
            or not obj["question"].strip()
        ):
            raise EvalSetError(f"{p}:{n}: needs a non-empty string 'question'")
        answers = obj.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            raise EvalSetError(
                f"{p}:{n}: 'answers' must be a list of non-empty strings ([] for an unanswerable question)"
            )
        src = obj.get("source")
        if src is not None and not isinstance(src, str):
            raise EvalSetError(f"{p}:{n}: 'source' must be a string path")
        src = None if src is None else resolve_source(src)
        items.append(EvalItem(obj["question"], tuple(answers), src, obj.get("domain")))
    if not items:
        raise EvalSetError(f"{p}: no questions")
    return items


def _same_source(path: str, source: str) -> bool:
    """True when indexed `path` is the file `source` names.

    The index stores absolute paths; a relative `source` ("Apache-2.0", "docs/faq.md") names the
    file by its trailing path components, so a question file works from any folder.
    """
    a, b = Path(path), Path(source)
    if a == b:
        return True
    if not b.is_absolute() and b.parts and a.parts[-len(b.parts) :] == b.parts:
        return True
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def evaluate(ask: Callable[[str], Any], items: Sequence[EvalItem], k: int = 10) -> EvalReport:
    """Answer every item with `ask(question) -> rag.Answer` and score it (see the module docstring)."""
    report = EvalReport(k=k)
    for it in items:
        ans = ask(it.question)
        passages = list(ans.passages)[:k]
        answerable = bool(it.answers)
        shown = f"{ans.text}\n{getattr(ans, 'evidence', '')}"
        contains = answerable and not getattr(ans, "abstained", False) and contains_answer(shown, it.answers)
        if it.source is not None:
            hit = any(_same_source(p.path, it.source) for p in passages)
            cited = any(_same_source(c.path, it.source) for c in ans.citations)
            first = bool(ans.citations) and _same_source(ans.citations[0].path, it.source)
            both = contains and first
        else:
            golds = [normalize_answer(a) for a in it.answers]
            hit = any(g and g in normalize_answer(p.text) for p in passages for g in golds)
            cited = both = None
        domain = it.domain or (passages[0].domain if passages and passages[0].domain else "unknown")
        report.rows.append(
            EvalRow(
                it.question,
                domain,
                ans.text,
                ans.mode,
                hit,
                exact_match(ans.text, it.answers) if answerable else 0.0,
                f1_score(ans.text, it.answers) if answerable else 0.0,
                cited if answerable else None,
                contains=contains,
                answer_citation=both if answerable else None,
                answerable=answerable,
                abstained=bool(getattr(ans, "abstained", False)),
                score=getattr(ans, "score", None),
            )
        )
    return report


def format_table(report: EvalReport) -> str:
    """A plain-text table of the summary (one row per domain, then overall)."""
    head = (
        f"{'domain':<12}{'n':>5}{'hit@' + str(report.k):>9}{'EM':>8}{'F1':>8}{'cite':>8}{'ans+cite':>9}"
        f"{'reader':>8}{'unans':>7}{'abst P':>8}{'abst R':>8}"
    )
    lines = [head, "-" * len(head)]

    def fmt(x, width):
        return f"{'-':>{width}}" if x is None else f"{x:>{width}.3f}"

    for d, s in report.summary().items():
        lines.append(
            f"{d:<12}{s['n']:>5}{s['hit_at_k']:>9.3f}{s['exact_match']:>8.3f}{s['f1']:>8.3f}"
            f"{fmt(s['citation_accuracy'], 8)}{fmt(s['answer_citation'], 9)}{s['reader_answers']:>8}"
            f"{s['unanswerable']:>7}{fmt(s['abstain_precision'], 8)}{fmt(s['abstain_recall'], 8)}"
        )
    return "\n".join(lines)


def eval_command(
    file: str,
    *,
    index: str,
    k: int = 10,
    json_out: bool = False,
    out: str | None = None,
    config: RAGConfig | None = None,
    context_tokens: int | None = None,
) -> EvalReport:
    """`rag eval`: open the index, answer every question, print the table (or JSON), optionally save JSON."""
    from gdn2_rag import RAG

    items = load_eval_set(file)
    # a bad --out is reported before minutes of answering, not after
    if out and (Path(out).is_dir() or not Path(out).parent.is_dir()):
        raise EvalSetError(f"cannot write the report to {out}: not a file path in an existing folder")
    rag = RAG.open(index, config=config)
    report = evaluate(functools.partial(rag.ask, context_tokens=context_tokens), items, k=k)
    data = report.to_dict()
    if out:
        Path(out).write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data) if json_out else format_table(report))
    return report
